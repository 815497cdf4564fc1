"""The resource layout of a run: which actors it starts and what each reserves, decided once from
the config, plus the check that a cluster can hold it. Pure functions, no Ray: the driver turns a
:class:`Layout` into one Ray placement group (bundles ``0 .. R-1`` the learner's ranks, bundle
``R + i`` rollout worker ``i``), and ``selfplay train --dry-run`` prints it.

Locally the CPUs are shared out in fractions. Ray only books CPUs (it pins nothing), so booking
a whole CPU per actor would make a learner and two workers wait forever on a 2-core machine for
a third CPU that the work itself does not need.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfplay.core.config_schema import ClusterConfig, ConfigError

#: Ray's placement-group strategies (``cluster.placement_strategy``).
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

#: Resources of one node as Ray reports them: {"CPU": 2.0, "GPU": 1.0, ...}.
Node = dict[str, float]


@dataclass(frozen=True)
class Slot:
    """One actor of the layout and what it reserves."""

    name: str
    cpus: float
    gpus: float

    @property
    def tensor_parallel(self) -> int:
        """A rollout worker's vLLM tensor-parallel size: its whole GPUs, at least 1 (a fraction of
        one GPU, or none, is one engine rank)."""
        return max(1, int(self.gpus))

    def bundle(self) -> dict[str, float]:
        """Its placement-group bundle (Ray refuses zero amounts in a bundle)."""
        return {k: v for k, v in (("CPU", self.cpus), ("GPU", self.gpus)) if v > 0}


@dataclass(frozen=True)
class Layout:
    """The learner and the rollout workers, in bundle order, and how Ray should place them."""

    learners: tuple[Slot, ...]
    workers: tuple[Slot, ...]
    strategy: str
    local: bool

    @property
    def learner(self) -> Slot:
        """Rank 0 of the learner (every rank reserves the same)."""
        return self.learners[0]

    @property
    def slots(self) -> tuple[Slot, ...]:
        return (*self.learners, *self.workers)

    def bundles(self) -> list[dict[str, float]]:
        return [s.bundle() for s in self.slots]

    def total(self, resource: str) -> float:
        return sum(b.get(resource, 0.0) for b in self.bundles())


def _share(cpus: float, actors: int) -> float:
    """An even share of ``cpus`` among ``actors``, at most 1, rounded down to 0.01 (so the shares
    never add up to more than there is)."""
    return min(1.0, int(cpus / actors * 100) / 100)


def plan_layout(cluster: ClusterConfig, num_workers: int, local: bool, local_cpus: float = 1.0) -> Layout:
    """The layout a config asks for. ``local``: a Ray this run starts, with ``local_cpus`` CPUs;
    the CPU settings left at None then share them out, on a cluster they mean 1 each."""
    ranks = cluster.learner_ranks
    auto = _share(local_cpus, num_workers + ranks) if local else 1.0
    learners = tuple(Slot("learner" if ranks == 1 else f"learner rank {r}", cluster.learner_cpus or auto,
                          cluster.learner_gpus) for r in range(ranks))
    workers = tuple(Slot(f"rollout worker {i}", cluster.worker_cpus or auto, cluster.worker_gpus)
                    for i in range(num_workers))
    return Layout(learners, workers, cluster.placement_strategy, local)


def _fits(need: dict[str, float], free: Node) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def place(layout: Layout, nodes: list[Node]) -> list[int] | None:
    """Which node (index into ``nodes``, their free resources) each slot would go to, or None if
    the layout cannot be placed there. First fit, largest slots first, as the strategy allows:
    STRICT_PACK needs one node for all, STRICT_SPREAD a different node for each."""
    bundles = layout.bundles()
    if layout.strategy == "STRICT_PACK":
        need = {k: layout.total(k) for k in ("CPU", "GPU")}
        for n, node in enumerate(nodes):
            if _fits({k: v for k, v in need.items() if v > 0}, node):
                return [n] * len(bundles)
        return None
    free = [dict(node) for node in nodes]
    where: list[int | None] = [None] * len(bundles)
    used: set[int] = set()
    order = sorted(range(len(bundles)), key=lambda i: (-bundles[i].get("GPU", 0), -bundles[i].get("CPU", 0)))
    for i in order:
        for n, node in enumerate(free):
            if layout.strategy == "STRICT_SPREAD" and n in used:
                continue
            if _fits(bundles[i], node):
                for k, v in bundles[i].items():
                    node[k] = node.get(k, 0.0) - v
                where[i] = n
                used.add(n)
                break
        else:
            return None
    return [n for n in where if n is not None]


def _amounts(slot: Slot) -> str:
    return f"CPU {slot.cpus:g}, GPU {slot.gpus:g}"


def shortfall(layout: Layout, nodes: list[Node]) -> str:
    """One line saying why ``layout`` does not fit ``nodes`` and which settings to change."""
    have = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
    w = layout.workers[0] if layout.workers else layout.learner
    # An evaluation's layout has no learner (selfplay.commands.bench_workers).
    learners = f"{len(layout.learners)} learner rank(s) x {{{_amounts(layout.learner)}}} + " if layout.learners else ""
    need = (f"{learners}{len(layout.workers)} rollout workers x "
            f"{{{_amounts(w)}}} = CPU {layout.total('CPU'):g}, GPU {layout.total('GPU'):g}")
    where = "this machine's local Ray" if layout.local else f"the cluster's {len(nodes)} node(s)"
    return (f"cluster: the layout ({need}, {layout.strategy}) does not fit {where} (CPU {have['CPU']:g}, "
            f"GPU {have['GPU']:g}): lower cluster.worker_cpus/learner_cpus/worker_gpus/learner_gpus "
            f"or rollout.num_workers, or add resources")


def check_fits(layout: Layout, nodes: list[Node]) -> None:
    """Raise :class:`ConfigError` (one line) when ``layout`` cannot be placed on ``nodes``."""
    if place(layout, nodes) is None:
        raise ConfigError(shortfall(layout, nodes))


def describe(layout: Layout, nodes: list[Node], node_names: list[str] | None = None) -> str:
    """The layout as ``--dry-run`` prints it: each actor, what it reserves and where it would go."""
    names = node_names or [f"node {i}" for i in range(len(nodes))]
    where = place(layout, nodes)
    lines = [f"resource layout ({'local Ray' if layout.local else 'cluster'}, placement "
             f"{layout.strategy}; {len(layout.workers)} rollout workers, learner in "
             f"{len(layout.learners)} rank(s)):"]
    for i, slot in enumerate(layout.slots):
        at = names[where[i]] if where is not None else "-"
        tp = f", vLLM tensor-parallel {int(slot.gpus)}" if slot.gpus > 1 and slot in layout.workers else ""
        lines.append(f"  {slot.name:<18} CPU {slot.cpus:<5g} GPU {slot.gpus:<4g} on {at}{tp}")
    lines.append(f"  {'total':<18} CPU {layout.total('CPU'):<5g} GPU {layout.total('GPU'):<4g}")
    for name, node in zip(names, nodes):
        lines.append(f"  {name}: CPU {node.get('CPU', 0.0):g}, GPU {node.get('GPU', 0.0):g}")
    lines.append("fits: yes" if where is not None else "fits: no")
    return "\n".join(lines)
