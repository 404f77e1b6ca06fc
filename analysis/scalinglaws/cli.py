"""Command line: `python -m scalinglaws <command>` (or the `scalinglaws` console script).

Commands: report, fit, laws, backtest, tune, predict, allocate, bcrit, compare, inference. Run any with --help.
User mistakes (missing file, bad column, data a fit cannot use) exit with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from . import __version__, calculator
from ._format import fmt
from ._arguments import Parser, check_arguments, say_dataset
from ._arguments import columns as _columns
from ._arguments import source as _source
from ._arguments import source_table as _source_table
from .errors import InputError
from .laws import PUBLISHED, load_law, save_B_crit, save_law
from .table import describe_excluded

FIT_NAMES = {"2": "Approach 2 (isoFLOP profiles)", "2-classic": "Approach 2 (isoFLOP profiles)",
             "3": "Approach 3 (parametric L(N, D))", "kaplan": "Kaplan's L(N, D)"}

LAW_HELP = f"a published law ({', '.join(PUBLISHED)}) or a fit.json written by `fit --save`"


def _print_table(console: Console, title: str, columns, rows) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c != columns[0] else "left")
    for r in rows:
        table.add_row(*[str(v) for v in r])
    console.print(table)


# ---------------------------------------------------------------- commands


def cmd_report(args, console):
    from .report import build_report

    path = build_report(_source(args), args.out, bootstrap_n=args.bootstrap, seed=args.seed, grid=args.grid,
                        columns=_columns(args.col), progress=not args.quiet, name=args.name, title=args.title,
                        commentary=args.commentary, fig_format=args.format, jobs=args.jobs)
    console.print(f"wrote {path} and {path.with_suffix('.html').name} (+ figures) in {path.parent}")


def _fit_law(args, console):
    """`fit --law NAME`: one law of the registry, with intervals and the reasons it is not identified."""
    from .registry import fit_law

    df = _source_table(args)
    say_dataset(args, console)
    if args.save:
        raise InputError("--save", "saving is for --approach 3 or kaplan (the forms `predict` knows)",
                         "drop --save, or use --approach 3")
    with console.status(f"fitting {args.law}", spinner="dots"):
        fit = fit_law(args.law, df, grid=args.grid, n_boot=args.bootstrap, seed=args.seed, E=args.E)
    summary = fit.to_dict()
    summary["not_identified"] = [{"problem": p, "fix": f} for p, f in fit.extra["not_identified"]]
    summary["noise"] = fit.extra["noise"].describe()
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    problems = fit.extra["not_identified"]
    if problems:  # said first, and the estimates titled as what they are: not a result
        console.print(f"[yellow]{fit.name} is not identified by these {len(df)} runs[/yellow]; its point "
                      "estimates below are not a result.")
        for p, f in problems:
            console.print(f"[yellow]not identified:[/yellow] {p}. Fix: {f}")
        _print_params(console, fit, f"{fit.name}: point estimates of a fit that is not identified")
    else:
        _print_params(console, fit, f"{fit.name} on {len(df)} runs")
    console.print(summary["noise"])


def _print_params(console, fit, title):
    rows = []
    for name, value in fit.params.items():
        iv = fit.intervals.get(name)
        rows.append((name, fmt(value), f"[{fmt(iv[0])}, {fmt(iv[1])}]" if iv else "-"))
    _print_table(console, title, ["parameter", "estimate", f"{fit.level:.0%} interval"], rows)


def cmd_laws(args, console):
    from .registry import describe_laws

    laws = describe_laws()
    if args.json:
        print(laws.to_json(orient="records"))
        return
    _print_table(console, "Laws (scalinglaws fit --law NAME; scalinglaws backtest)", list(laws.columns),
                 laws.itertuples(index=False))


def cmd_backtest(args, console):
    from .selection import WINNER_RULE, backtest_laws

    df = _source_table(args)
    say_dataset(args, console)
    laws = args.laws.split(",") if args.laws else None
    with console.status("fitting every law below the cutoff", spinner="dots"):
        bt = backtest_laws(df, laws=laws, cutoff_C=args.cutoff, grid=args.grid, cv=not args.no_cv, E=args.E)
    if args.json:
        print(json.dumps({"cutoff_C": bt.cutoff_C, "cutoff_rule": bt.cutoff_rule, "winner": bt.winner,
                          "n_fit": bt.n_fit, "n_held": bt.n_held,
                          "scores": json.loads(bt.scores.to_json(orient="records"))}, indent=2))
        return
    rows = [(r.law, "-" if r.n_params != r.n_params else str(int(r.n_params)),
             *((_pct(r.mape) + ("" if r.mape_se != r.mape_se else f" ± {r.mape_se:.2f}"), _pct(r.worst),
                _pct(r.cv_mape), _pct(r.cv_worst)) if r.identified else ("-",) * 4),  # no result: no scores
             "yes" if r.identified else f"no: {r.why_not}")
            for r in bt.scores.itertuples()]
    _print_table(console, f"Backtest: fitted on {bt.n_fit} runs ({bt.cutoff_rule}), {bt.n_held} held out",
                 ["law", "parameters", "held-out MAPE ± se", "worst", "CV MAPE", "CV worst", "identified"], rows)
    console.print(f"winner: {bt.winner} ({WINNER_RULE})" if bt.winner else "no identified law: no winner")


def _pct(x) -> str:
    return "-" if x != x else f"{x:.2f}%"


def cmd_fit(args, console):
    from . import chinchilla, frontier, kaplan
    from .isoflop import fit_approach2_robust
    from .source import load_source
    from .table import count_budgets, fit_table

    if args.law:
        return _fit_law(args, console)
    if args.approach == "bcrit" and not args.dataset and args.source:
        return _fit_bcrit(args, console)
    if args.dataset or not args.source:
        raise InputError("source", "--approach needs a table or runs directory", "pass one, or use --law with --dataset")
    if args.save and args.approach.startswith("2"):
        raise InputError("--save", "Approach 2 gives a frontier, not a law L(N, D)",
                         "use --approach 3 or --approach kaplan to save a law")
    source = load_source(_source(args), _columns(args.col))
    df = source.table
    budgets = count_budgets(df)
    if budgets < 2:
        raise InputError(_source(args), f"the runs span {budgets} compute budget{'s' if budgets != 1 else ''}; "
                         f"{FIT_NAMES[args.approach]} needs at least 2 budgets (with one budget, N and D move together: "
                         "N x D is fixed, so their effects cannot be told apart)",
                         "add runs at a second budget (e.g. plan.budgets with 2 or more values)")
    fit_fn, kw = {"2": (fit_approach2_robust, {"window": args.window, "seed": args.seed}),
                  "2-classic": (frontier.fit_approach2, {"window": args.window}),
                  "3": (chinchilla.fit_approach3, {"grid": args.grid}),
                  "kaplan": (kaplan.fit_L_ND, {})}[args.approach]
    if args.approach == "2" and 0 < args.bootstrap < 100:
        raise InputError("--bootstrap", f"{args.bootstrap} resamples per budget is too few for approach 2's "
                         "intervals", "pass --bootstrap 400 (the default when omitted), or at least 100")
    if args.approach == "2":  # its intervals come from its own resamples of each budget's minimum
        with console.status("fitting the isoFLOP minima and their uncertainties", spinner="dots"):
            fit = fit_table(fit_fn, df, **kw, **({"n_resamples": args.bootstrap} if args.bootstrap else {}))
    elif args.bootstrap:
        from .bootstrap import bootstrap

        with console.status(f"bootstrapping ({args.bootstrap} resamples)", spinner="dots"):
            fit = bootstrap(fit_fn, df, n=args.bootstrap, seed=args.seed, **kw)
    else:
        fit = fit_table(fit_fn, df, **kw)
    if args.save:
        save_law(fit, args.save)
    summary = fit.to_dict()
    summary["excluded"] = source.excluded
    minima = fit.extra.get("minima")
    if args.approach.startswith("2"):
        summary["refused"] = {str(k): v for k, v in fit.extra.get("refused", {}).items()}
        summary["minima"] = minima.to_dict(orient="records")
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    _print_params(console, fit, f"{fit.name} on {len(df)} runs")
    if args.approach.startswith("2"):  # each budget's minimum, its uncertainty and share, and what was refused
        columns = [c for c in ("C", "N_opt", "D_opt", "sigma_logN", "weight", "vertex_position", "n_sizes")
                   if c in minima]
        rows = [[fmt(r[c]) for c in columns] for r in summary["minima"]]
        rows += [[f"{float(k):.3g}", f"refused: {why}", *[""] * (len(columns) - 2)] for k, why in
                 summary["refused"].items()]
        _print_table(console, "Minimum of each budget", columns, rows)
    excluded = describe_excluded(summary["excluded"])
    if excluded:
        console.print(f"excluded {excluded} (only runs with status complete are fitted)")
    for flag in fit.flags:
        console.print(f"[yellow]warning:[/yellow] {flag}")
    if args.save:
        console.print(f"saved {args.save}")


def cmd_tune(args, console):
    from pathlib import Path

    from .lr_tuning import fit_lr_law, lr_optima
    from .source import runs_with_plan, tuning_runs

    root = Path(_source(args))
    if not root.is_dir():
        raise InputError(str(root), "is not a runs directory", "pass the runs of a plan.kind: tune sweep")
    runs = tuning_runs(runs_with_plan(root))
    if runs.empty:
        raise InputError(str(root), "holds no complete runs of a tuning sweep", "launch one (plan.kind: tune)")
    optima = lr_optima(runs, n_column=args.n)
    law = fit_lr_law(optima, n_boot=args.bootstrap, seed=args.seed, n_column=args.n, source=str(root))
    if args.out:
        law.save(args.out)
    if args.json:
        print(json.dumps({"law": {k: v for k, v in law.__dict__.items() if k != "points"},
                          "optima": [{"N": o.N, "lr_opt": o.lr_opt, "loss_opt": o.loss_opt, "flag": o.flag}
                                     for o in optima]}, indent=2, default=list))
        return
    _print_table(console, "LR_opt per size (parabola in ln LR)", ["N", "LRs", "LR_opt", "loss", "flag"],
                 [(fmt(o.N), len(o.lrs), fmt(o.lr_opt), fmt(o.loss_opt), o.flag or "-") for o in optima])
    iv = law.interval.get("exponent")
    console.print(law.formula
                  + (f", exponent {law.level:.0%} interval [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""))
    if args.out:
        console.print(f"wrote {args.out}: train with it through train.lr_rule=tuned train.lr_law={args.out}")


def cmd_predict(args, console):
    law = load_law(args.law)
    loss = calculator.predict(law, args.N, args.D)
    iv = calculator.predict_interval(law, args.N, args.D)
    if args.json:
        print(json.dumps({"law": law.name, "N": args.N, "D": args.D, "loss": loss, "interval": iv}))
        return
    extra = f"  ({law.level:.0%} interval [{fmt(iv[0])}, {fmt(iv[1])}])" if iv else ""
    console.print(f"{law.name}: L(N={fmt(args.N)}, D={fmt(args.D)}) = {loss:.4f} nats/token{extra}")


def cmd_allocate(args, console):
    law = load_law(args.law)
    a = calculator.allocate(law, args.C)
    if args.json:
        print(json.dumps({"law": law.name, "C": a.C, "N_opt": a.N, "D_opt": a.D, "loss": a.loss,
                          "tokens_per_param": a.tokens_per_param, "intervals": dict(a.intervals)}))
        return
    rows = []
    for label, key, value in (("N_opt (parameters)", "N", a.N), ("D_opt (tokens)", "D", a.D),
                              ("loss (nats/token)", "loss", a.loss)):
        iv = a.intervals.get(key)
        rows.append((label, fmt(value), f"[{fmt(iv[0])}, {fmt(iv[1])}]" if iv else "-"))
    rows.append(("tokens per parameter", fmt(a.tokens_per_param), "-"))
    _print_table(console, f"{law.name}: compute-optimal model at C = {fmt(a.C)} FLOPs (6ND)",
                 ["quantity", "value", "interval"], rows)


def cmd_bcrit(args, console):
    r = calculator.bcrit_summary(args.loss, args.law)
    if args.json:
        return print(json.dumps(r))
    iv = f" ({r['level']:.0%} interval [{fmt(r['interval'][0])}, {fmt(r['interval'][1])}])" if r["interval"] else ""
    console.print(f"B_crit(L={args.loss}) = {r['B_crit_tokens']:.4g} tokens{iv} ({r['law']}: B* / L^(1/alpha_B), "
                  f"B* = {fmt(r['params']['B_star'])}, alpha_B = {r['params']['alpha_B']:.4g})")


def _fit_bcrit(args, console):
    """`fit --approach bcrit`: B_crit(L) from the batch-size sweeps of a runs directory (critical_batch)."""
    from .critical_batch import fit_critical_batch
    from .roles import assign_roles
    from .source import load_source

    source = load_source(_source(args), _columns(args.col))
    if source.curves is None:
        raise InputError(str(args.source), "--approach bcrit needs learning curves (metrics.parquet)",
                         "pass the runs directory of a batch-size sweep (plan kind batch_size)")
    runs = assign_roles(source.table).all
    fit = fit_critical_batch(source.curves, runs.assign(n_params=runs["N"]), n_boot=args.bootstrap, seed=args.seed)
    if args.save:
        save_B_crit(fit, args.save)
    points = fit.extra["points"]
    if args.json:
        return print(json.dumps({**fit.to_dict(), "points": json.loads(points.to_json(orient="records"))}, indent=2))
    _print_params(console, fit, f"{fit.name} from {len(points)} target losses, {len(fit.extra['sweeps'])} sweep(s)")
    _print_table(console, "B_crit at each target loss (Kaplan eq 5.1; tokens)", list(points.columns),
                 [[fmt(v) for v in r] for r in points.itertuples(index=False)])
    for flag in fit.flags:
        console.print(f"[yellow]warning:[/yellow] {flag}")
    if args.save:
        console.print(f"saved {args.save} (scalinglaws bcrit --loss L --law {args.save})")


def cmd_compare(args, console):
    law = load_law(args.law)
    plans = dict(calculator.parse_plan(p) for p in args.plan) if args.plan else None
    table = calculator.compare(law, plans)
    if args.json:
        print(table.to_json(orient="records"))
        return
    cols = ["plan", "N", "D", "tokens_per_param", "C", "loss", "N_opt", "D_opt", "loss_opt", "excess_loss"]
    rows = [[r.plan] + [fmt(getattr(r, c)) for c in cols[1:]] for r in table.itertuples()]
    _print_table(console, f"Plans under the {law.name} law (C = 6ND FLOPs, loss in nats/token)", cols, rows)


def cmd_inference(args, console):
    law = load_law(args.law)
    r = calculator.allocate_inference(law, args.inference_tokens, loss=args.loss, C=args.C)
    out = {"law": law.name, "loss": r.loss, "inference_tokens": r.inference_tokens, "N": r.N, "D": r.D,
           "tokens_per_param": r.tokens_per_param, "train_flops": r.train_flops,
           "inference_flops": r.inference_flops, "total_flops": r.total_flops, "chinchilla_N": r.chinchilla_N,
           "chinchilla_D": r.chinchilla_D, "chinchilla_total_flops": r.chinchilla_total_flops, "saving": r.saving}
    if args.json:
        print(json.dumps(out))
        return
    rows = [("parameters N", fmt(r.N), fmt(r.chinchilla_N)), ("tokens D", fmt(r.D), fmt(r.chinchilla_D)),
            ("tokens per parameter", fmt(r.tokens_per_param), fmt(r.chinchilla_D / r.chinchilla_N)),
            ("total FLOPs (6ND + 2N T_inf)", fmt(r.total_flops), fmt(r.chinchilla_total_flops))]
    _print_table(console, f"{law.name}: loss {r.loss:.4f} with {fmt(r.inference_tokens)} inference tokens",
                 ["", "inference-aware", "Chinchilla-optimal"], rows)
    console.print(f"saving: {100 * r.saving:.1f}% of total FLOPs (Sardana et al. 2023)")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="scalinglaws", description="Fit, report and use neural scaling laws.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    def add(name, fn, help_):
        s = sub.add_parser(name, help=help_, description=help_)  # a Parser too (argparse passes the class on)
        s.set_defaults(fn=fn)
        s.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return s

    sweep_help = "with a runs root as source: only the runs of this sweep (<source>/<NAME>)"
    col_help = "map a canonical column to yours, e.g. --col N=params --col loss=val_loss (repeatable)"
    s = add("report", cmd_report, "Fit everything the data supports; write report.md/.html and figures")
    s.add_argument("source", help="a .csv/.parquet table (columns N, D, loss; C optional) or a runs directory")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per fit (0: none; default 1000)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    s.add_argument("--jobs", type=int, default=1,
                   help="processes for the bootstrap refits (default 1; the report is the same for any number)")
    s.add_argument("--grid", choices=["chinchilla", "small"], default="chinchilla",
                   help="Approach 3 grid of starts (default: Chinchilla's full grid)")
    s.add_argument("--col", action="append", help=col_help)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--name", default="report", help="file name of the report, without .md/.html (default: report)")
    s.add_argument("--title", default="Scaling-law report", help="the report's heading")
    s.add_argument("--commentary", metavar="MD", help="a markdown file appended as a final 'Commentary' section")
    s.add_argument("--sweep", metavar="NAME", help=sweep_help)
    from .plots import FIGURE_DPI, FORMATS

    s.add_argument("--format", choices=FORMATS, default="png",
                   help=f"figure file format (default png, {FIGURE_DPI} dpi; svg and pdf are vector; pdf figures are "
                        "linked, not shown, in report.html)")

    from .registry import LAWS

    s = add("fit", cmd_fit, "Fit one law to a table and print it")
    s.add_argument("source", nargs="?", help="a .csv/.parquet table or a runs directory")
    s.add_argument("--dataset", help="a published table shipped with scalinglaws (chinchilla_epoch), with --law")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--approach", choices=["2", "2-classic", "3", "kaplan", "bcrit"],
                       help="2: isoFLOP minima with uncertainties, weighted frontier (robust); 2-classic: "
                            "Hoffmann's parabolas, refusing edge budgets; 3: L = E + A/N^alpha + B/D^beta; "
                            "kaplan: eq 1.5 L(N, D); "
                            "bcrit: B_crit(L) = B*/L^(1/alpha_B) from a batch-size sweep (Kaplan eq 5.1-5.3)")
    which.add_argument("--law", choices=list(LAWS), help="a law of the registry (see `scalinglaws laws`)")
    s.add_argument("--E", type=float, default=0.0, help="--law pinned_e: the fixed irreducible loss (default 0)")
    s.add_argument("--col", action="append", help=col_help)
    s.add_argument("--grid", choices=["chinchilla", "small"], default="chinchilla", help="Approach 3 grid of starts")
    s.add_argument("--bootstrap", type=int, default=0,
                   help="bootstrap resamples for intervals (default 0: none; approach 2: resamples per budget, "
                        "default 400)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    s.add_argument("--window", type=int, default=None,
                   help="approach 2: fit each parabola to this many distinct sizes around the budget's lowest loss "
                        "(default: all)")
    s.add_argument("--save", metavar="FIT_JSON", help="save the law: approach 3/kaplan for predict, bcrit for bcrit --law")
    s.add_argument("--sweep", metavar="NAME", help=sweep_help)

    add("laws", cmd_laws, "List the laws `fit --law` and `backtest` fit, with their formulas and sources")

    s = add("backtest", cmd_backtest, "Fit every law on small budgets and score it on the held-out large ones")
    s.add_argument("source", nargs="?", help="a .csv/.parquet table or a runs directory")
    s.add_argument("--dataset", help="a published table instead of a source: chinchilla_epoch (Besiroglu et al. 2024)")
    s.add_argument("--col", action="append", help=col_help)
    s.add_argument("--cutoff", type=float, help="fit on C <= this (default C_max/8; the largest budget alone "
                   "is held out when that leaves fewer than 2 budgets)")
    s.add_argument("--laws", help="comma-separated law names (default: all)")
    s.add_argument("--grid", choices=["chinchilla", "small"], default="chinchilla", help="grid of starts")
    s.add_argument("--no-cv", action="store_true", help="skip leave-one-budget-out cross-validation")
    s.add_argument("--E", type=float, default=0.0, help="the pinned_e law's fixed irreducible loss (default 0)")

    s = add("tune", cmd_tune, "LR_opt per size of a tuning sweep and the law LR_opt(N) (for train.lr_rule=tuned)")
    s.add_argument("source", help="the runs directory of a plan.kind: tune sweep (or a runs root with --sweep)")
    s.add_argument("--out", metavar="LR_LAW_JSON", help="write the law here (train.lr_law reads it)")
    s.add_argument("--n", choices=["n_params", "n_params_nonembed"], default="n_params",
                   help="what N counts (default n_params: every parameter, as 6ND does)")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over sizes (default 1000)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    s.add_argument("--sweep", metavar="NAME", help=sweep_help)

    s = add("predict", cmd_predict, "Loss of N parameters trained on D tokens")
    s.add_argument("--law", default="chinchilla", help=LAW_HELP)
    s.add_argument("--N", type=float, required=True, help="parameters")
    s.add_argument("--D", type=float, required=True, help="training tokens")

    s = add("allocate", cmd_allocate, "Compute-optimal N and D for a training budget C = 6ND FLOPs")
    s.add_argument("--law", default="chinchilla", help=LAW_HELP)
    s.add_argument("--C", type=float, required=True, help="training FLOPs")

    s = add("bcrit", cmd_bcrit, "The critical batch size (tokens) at a given loss, B_crit(L) = B*/L^(1/alpha_B)")
    s.add_argument("--loss", type=float, required=True, help="loss in nats/token")
    s.add_argument("--law", metavar="BCRIT_JSON", help="a fitted B_crit(L): the report's bcrit.json or `fit RUNS "
                   "--approach bcrit --save FILE` (default: Kaplan 2020's B* = 2e8 tokens, alpha_B = 0.21)")

    s = add("compare", cmd_compare, "Compare named (N, D) plans with the compute-optimal model of equal compute")
    s.add_argument("--law", default="chinchilla", help=LAW_HELP)
    s.add_argument("--plan", action="append", metavar="NAME:N:D",
                   help="a plan, e.g. mine:1e9:2e10 (repeatable; default: GPT-3, Gopher, Chinchilla, LLaMA-1/2)")

    s = add("inference", cmd_inference,
            "Cheapest model over training + inference FLOPs for a target loss (Sardana et al. 2023)")
    s.add_argument("--law", default="chinchilla", help=LAW_HELP)
    target = s.add_mutually_exclusive_group(required=True)
    target.add_argument("--loss", type=float, help="target loss (nats/token)")
    target.add_argument("--C", type=float, help="training budget: target the Chinchilla-optimal loss at C")
    s.add_argument("--inference-tokens", type=float, required=True, help="tokens the model will serve")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        check_arguments(args)
        args.fn(args, console)
    except InputError as e:
        print(f"scalinglaws {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"scalinglaws {args.command}: error: {e.filename or ''}: {e.strerror or e}. "
              "Fix: check the path and permissions", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
