"""The ``selfplay`` command: parse, validate, build, call. Logging is configured here only."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from typing import Iterator, Sequence

from selfplay.config import ConfigError, load_config, shipped_configs, to_dict
from selfplay.loop.restarts import RunAborted

log = logging.getLogger("selfplay")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread. A KeyboardInterrupt, so that it unwinds exactly what
    Ctrl-C unwinds (the driver's ``finally``: workers, their engines, a local Ray)."""


def _add_config_args(p: argparse.ArgumentParser, default: str | None = "debug") -> None:
    p.add_argument("--config", default=default,
                   help=f"shipped config name ({', '.join(shipped_configs())}) or a YAML path "
                        f"(default: {default})")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. trainer.lr=1e-6 rollout.episodes_per_step=8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfplay",
        description="Multi-agent self-play RL for language models (Ray + vLLM + Gymnasium).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a policy by self-play (local Ray or RAY_ADDRESS)",
                       description="Run the self-play training loop. Files go to runs/<name>/.")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved run and its resource layout, check that the cluster (local, "
                        "or RAY_ADDRESS) can hold it, and exit without training")

    p = sub.add_parser("eval", help="evaluate a model (or a fixed opponent) against fixed opponents",
                       description="Play games against fixed opponents and print win/draw/loss/"
                                   "invalid rates per game, opponent and role.")
    _add_config_args(p)
    p.add_argument("--model", action="append",
                   help="model to evaluate: built-in name, folder or hub id (default: the config's "
                        "model); with --bench, give it twice to compare two models")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=SOURCE",
                   help="held-out benchmark: a JSONL file of question/answer rows, a datasets folder "
                        "or a cached dataset id, with ,key=value options (question=, answer=, split=, "
                        "template=, max_new_tokens=, limit=, samples=); repeat for several")
    p.add_argument("--player", default="model", choices=["model", "random", "strong"],
                   help="who plays the evaluated role: the model, or a fixed opponent (no model needed)")
    p.add_argument("--games", type=int, help="games per (game, opponent, role)")
    p.add_argument("--envs", help="comma-separated env ids (default: the config's envs)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--levels", help="SAT: levels as n,k,l separated by spaces (default: SATURN's 10 "
                                    "evaluation levels, (3,5,20) to (6,7,40))")
    p.add_argument("--instances", type=int, default=4,
                   help="SAT: fresh problems per level (default 4; SATURN: 100)")
    p.add_argument("--samples", type=int, default=None,
                   help="answers sampled per problem, for unbiased pass@k (SAT: default 4, SATURN: 12; "
                        "--bench: default 1 or the benchmark's samples=)")

    p = sub.add_parser("play", help="play a game in the terminal against a fixed opponent or a model")
    p.add_argument("game", help="env id or short name, e.g. TicTacToe or selfplay/KuhnPoker-v0")
    p.add_argument("--opponent", default="strong", choices=["random", "strong", "model"],
                   help="who plays the other role (default: strong)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model for --opponent model")
    p.add_argument("--role", "--seat", dest="role", type=int, default=0,
                   help="your role: 0 moves first (default 0)")
    p.add_argument("--seed", type=int, default=None, help="seed for the deal/board")

    p = sub.add_parser("model", help="prepare or locate models")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    mp = msub.add_parser("prepare", help="materialise built-in models into the cache (idempotent)")
    mp.add_argument("names", nargs="*", default=["smollm2-135m-instruct", "tiny"],
                    help="built-in models (default: smollm2-135m-instruct tiny)")
    mp.add_argument("--no-verify", action="store_true", help="skip the vLLM load check")
    mpath = msub.add_parser("path", help="print where a model is (preparing it if built-in)")
    mpath.add_argument("name")
    mmerge = msub.add_parser("merge", help="merge a LoRA adapter into its base: a Hugging Face folder",
                             description="Write base + alpha/r * B @ A for every adapted weight, "
                                         "with the base's config and the tokenizer, to --out.")
    mmerge.add_argument("source", metavar="CHECKPOINT_OR_ADAPTER_DIR",
                        help="a checkpoint of a LoRA run (its adapter/) or a PEFT adapter folder")
    mmerge.add_argument("--out", required=True, help="folder to write the merged model to")
    mmerge.add_argument("--base", help="the base model (default: the adapter's base_model_name_or_path)")
    mmerge.add_argument("--policy", metavar="NAME",
                        help="the policy to merge, of a run with several (policies:; its adapter/NAME/)")

    p = sub.add_parser("bench", help="benchmarks that print figures (--json: one JSON line last)")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    for name, text in (("rollout", "concurrent self-play vs raw vLLM vs transformers, tokens/s"),
                       ("learner", "learner tokens/s vs a bare torch loop"),
                       ("sync", "weight publishing time and MB/s vs the in-worker floor"),
                       ("async", "the same training run per trainer.max_staleness k: speed-up and learning")):
        bp = bsub.add_parser(name, help=text)
        _add_config_args(bp)
        bp.add_argument("--json", action="store_true", help="print one JSON object on the last line")
        if name == "rollout":
            bp.add_argument("--games", dest="n", type=int, metavar="N", help="concurrent games (default 32)")
            bp.add_argument("--max-new-tokens", type=int, metavar="N", help="tokens a turn (default 64)")
        if name == "learner":
            bp.add_argument("--ranks", type=int, default=0, metavar="N",
                            help="time the sharded learner (FSDP2) on 1 and N local ranks instead")
            bp.add_argument("--samples", dest="num_samples", type=int, metavar="N",
                            help="sequences a step (default 16)")
            bp.add_argument("--seq-len", type=int, metavar="N", help="tokens a sequence (default 256)")
            bp.add_argument("--steps", type=int, metavar="N", help="timed steps (default 2)")
        if name == "async":
            bp.add_argument("--staleness", type=_staleness_list, default=None, metavar="K,K,...",
                            help="values of trainer.max_staleness, 0 among them (default 0,1,2); each "
                                 "trains <run_root>/<name>-async-k<k> afresh")

    p = sub.add_parser("config", help="print the resolved configuration")
    _add_config_args(p)
    return parser


def _staleness_list(text: str) -> list[int]:
    """``--staleness 0,1,2``, parsed where a bad value is a usage error."""
    from selfplay.stats.async_figures import parse_staleness

    try:
        return parse_staleness(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


#: The stop a signal asked for (KeyboardInterrupt or Terminated), kept until it unwinds the run:
#: an exception a handler raises while the interpreter runs a ``__del__`` or a weakref callback
#: is printed and dropped, so the training loop also checks this between steps (:func:`check_stop`).
_requested: list[type[KeyboardInterrupt]] = []


def _raise_terminated(signum: int, frame: object) -> None:
    # Only the first SIGTERM unwinds; a second one while the first is still shutting things down
    # ends the process at once, as SIGTERM does by default (the sender insists).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _requested.append(Terminated)
    raise Terminated


def _raise_interrupt(signum: int, frame: object) -> None:
    _requested.append(KeyboardInterrupt)
    raise KeyboardInterrupt


def check_stop() -> None:
    """Raise the stop a signal asked for if it has not unwound the run yet (called between steps)."""
    if _requested:
        raise _requested[0]


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """For the duration of a command, make SIGTERM (what schedulers, ``timeout`` and container
    runtimes send) raise :class:`Terminated` in the main thread, as Ctrl-C raises
    KeyboardInterrupt: its default action would end the process with nothing shut down. Both are
    also remembered for :func:`check_stop`."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live there
        yield
        return
    _requested.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _sigterm_unwinds():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from selfplay.placement.run_dir import setup_logging

    try:
        if args.command == "model":
            setup_logging(level=logging.DEBUG if args.verbose else logging.INFO)
            return _model(args)
        if args.command == "play":
            from selfplay.commands.play import play_terminal
            play_terminal(args.game, opponent=args.opponent, model=args.model,
                          role=args.role, seed=args.seed)
            return 0
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            import yaml
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        if args.command == "train" and args.dry_run:
            from selfplay.placement.dry_run import dry_run
            text, error = dry_run(cfg)
            print(text)
            if error:
                print(f"config error: {error}", file=sys.stderr)
                return 2
            return 0
        if args.command == "train":
            from selfplay.loop.driver import train
            train(cfg, resume=args.resume, verbose=args.verbose, check_stop=check_stop)
            return 0
        setup_logging(level=logging.DEBUG if args.verbose else logging.INFO)
        if args.command == "eval":
            from selfplay.commands.evaluate import run_eval_command
            return run_eval_command(cfg, args)
        if args.command == "bench":
            from selfplay.commands import bench
            sizes = {k: getattr(args, k) for k in ("n", "max_new_tokens", "num_samples", "seq_len", "steps")
                     if getattr(args, k, None) is not None}
            figures = bench.run(args.bench_command, cfg, ranks=getattr(args, "ranks", 0), sizes=sizes,
                                staleness=getattr(args, "staleness", None))
            if args.json:
                print(json.dumps(figures))
            return 0
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except RunAborted as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return 1


def _model(args: argparse.Namespace) -> int:
    from selfplay import model_cache as models

    if args.model_command == "prepare":
        for name in args.names:
            path = models.prepare(name, verify_vllm=False if args.no_verify else None)
            print(f"{name}: {path}")
        return 0
    if args.model_command == "merge":
        from selfplay.commands.model_merge import merge

        try:
            print(merge(args.source, args.out, base=args.base, policy=args.policy))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    print(models.resolve_model(args.name))
    return 0
