"""``selfplay train --dry-run``: the resolved run, its resource layout and whether the cluster
(the local machine, or ``RAY_ADDRESS`` / ``cluster.address``) can hold it; nothing is trained.

Locally nothing is started: the local Ray would have the configured CPUs and the GPUs torch sees.
On a cluster it connects, reads the alive nodes' resources and disconnects.
"""

from __future__ import annotations

from selfplay.config import Config, ConfigError
from selfplay.core.policies import describe as describe_policies
from selfplay.core.cores import available_cpus, format_cores, resolve_cores
from selfplay.placement.layout import check_fits, describe, plan_layout
from selfplay.placement.memory_check import check_trainable, plan_report
from selfplay.placement.ray_session import cluster_address, join_ray, local_nodes, nodes_now, stop_ray
from selfplay.placement.run_dir import with_persistent_run_root


def loop_description(cfg: Config, local: bool) -> str:
    """One line: synchronous, or asynchronous with its staleness bound, correction and cores."""
    t, cl = cfg.trainer, cfg.cluster
    if not t.max_staleness:
        return "loop: synchronous, on-policy (trainer.max_staleness=0)"
    worker, learner = resolve_cores(cl.learner_cores, cl.worker_cores, True, local, available_cpus(cl.num_cpus))
    cores = (f"; cores: rollout {format_cores(worker) if worker else 'any'}, learner "
             f"{format_cores(learner) if learner else 'any'}")
    return (f"loop: asynchronous, rollout at most {t.max_staleness} step(s) ahead of the learner "
            f"(trainer.max_staleness), off-policy correction {t.off_policy}"
            f"{f' (cap {t.importance_cap:g})' if t.off_policy != 'none' else ''}{cores}")


def dry_run(cfg: Config) -> tuple[str, str | None]:
    """The text ``--dry-run`` prints (the learner's memory plan included), and the one-line error
    ``selfplay train`` would stop with: the config is evaluation-only, the plan does not fit the
    learner's memory, or the layout does not fit the cluster's nodes (else None)."""
    cfg, why = with_persistent_run_root(cfg)
    address = cluster_address(cfg)
    if address:
        join_ray(address, log_to_driver=False)
        try:
            names, nodes = nodes_now()
        finally:
            stop_ray()
    else:
        names, nodes = local_nodes(cfg)
    layout = plan_layout(cfg.cluster, cfg.rollout.num_workers, local=address is None,
                         local_cpus=nodes[0]["CPU"] if nodes else 1.0)
    r = cfg.rollout
    head = (f"run {cfg.name}: model {cfg.model}, {len(cfg.envs)} environment(s), {cfg.trainer.steps} steps of "
            f"{r.episodes_per_step} episodes, backend {r.backend}, weight sync {r.weight_sync}\n"
            f"run directory {cfg.run_dir} (chosen by {why})\n"
            f"Ray: {'cluster at ' + address if address else 'a private local Ray (127.0.0.1), started by the run'}\n"
            f"{loop_description(cfg, local=address is None)}\n{describe_policies(cfg.policies)}")
    text = head + "\n" + describe(layout, nodes, names)
    plan, error = plan_report(cfg)
    text += "\n" + plan
    try:
        check_trainable(cfg)
    except ConfigError as err:
        return text, str(err)
    if error:
        return text, error
    try:
        check_fits(layout, nodes)
    except ConfigError as err:
        more = "" if address is None else " (an autoscaler may still add nodes when the run asks)"
        return text, f"{err}{more}"
    return text, None
