"""Search-space files: pydantic models, loading and validation.

A search space is a YAML file; `load_space` parses it into a frozen, validated
`SearchSpace`. This is one of the two modules that parse files (with `data.py`):
everything downstream receives typed objects. Unknown keys are rejected and every
error names the file and the dotted key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evosparse.activations import ACTIVATIONS, checked_activation
from evosparse.errors import UserError
from evosparse.expressions import unary_names
from evosparse.yaml_file import read_yaml


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Model):
    """Which data to learn and how to split it."""

    name: Literal["digits", "mnist1d", "xor", "parity", "file"] = "digits"
    path: Path | None = None
    label_column: int | str = -1
    """The label column of a CSV file: an index (negative counts from the end) or a
    header name."""
    header: bool | None = None
    """Whether a CSV file's first row names the columns; None detects it (a column with
    text in the first row and a number in the second)."""
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)
    split: Literal["stratified", "standard"] = "stratified"
    """stratified: val and test fractions drawn per class (seeded by split_seed); standard
    (mnist1d only): the MNIST-1D package's own train / test split (4,000 / 1,000 of its
    5,000 samples), val_fraction of the training split for validation, test_fraction unused,
    so test accuracies compare with the MNIST-1D paper's table."""
    standardize: bool = True
    parity_bits: int = Field(3, ge=2, le=16)
    mnist1d_samples: int = Field(5000, ge=100)

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if self.name == "file" and self.path is None:
            raise ValueError("dataset 'file' needs a 'path' to a .npz or .csv file")
        if self.name != "file" and self.path is not None:
            raise ValueError(f"'path' is only used with name: file (name is {self.name!r})")
        if self.split == "standard" and self.name != "mnist1d":
            raise ValueError(f"split: standard is MNIST-1D's own split; dataset {self.name!r} "
                             "has none (use split: stratified)")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% to train")
        return self


class NetworkSpec(_Model):
    """Constraints on the evolved graph."""

    topology: Literal["dag", "layered"] = "dag"
    max_hidden: int = Field(64, ge=0)
    max_levels: int = Field(4, ge=1, le=64)
    initial_density: float = Field(0.2, gt=0.0, le=1.0)
    bias: bool = True
    family: Literal["mlp", "conv1d", "conv2d"] = "mlp"
    """mlp: nodes are neurons; conv1d / conv2d: nodes are channels, connections kernels
    (`conv_geometry.py`), and the outputs read each channel's pooled map (`head`)."""
    kernel: int = Field(3, ge=1, le=15)
    """conv families: taps of every kernel along each spatial dimension (odd)."""
    scales: int = Field(2, ge=0, le=6)
    """conv families: how many times hidden channels may halve the input's resolution."""
    head: Literal["average", "bins"] = "average"
    """conv families: what an output reads of a channel: its global average (one weight)
    or its averages over `kernel` bins per spatial dimension (a weight each: where in the
    signal, not only how much)."""
    input_shape: tuple[int, ...] | None = None
    """conv families: (channels, length) or (channels, height, width) of one sample;
    default: MNIST-1D (1, 40), digits (1, 8, 8); other data must give it."""
    dilations: tuple[int, ...] = (1,)
    """conv families: the dilations a kernel may have (the gap between its taps; new
    kernels start at 1, `mutation.dilation` changes one): the same taps see further."""

    @model_validator(mode="after")
    def _conv_shape(self) -> NetworkSpec:
        if self.family == "mlp":
            if self.head != "average":
                raise ValueError("network.head is for conv1d and conv2d networks (family "
                                 f"mlp has no pooling; got head {self.head!r})")
            if self.dilations != (1,):
                raise ValueError("network.dilations is for conv1d and conv2d networks "
                                 f"(family mlp has no kernels; got {list(self.dilations)})")
            return self
        if not self.dilations or min(self.dilations) < 1 or 1 not in self.dilations:
            raise ValueError("network.dilations must be positive integers including 1 (new "
                             f"kernels start at 1), got {list(self.dilations)}")
        if self.kernel % 2 == 0:
            raise ValueError(f"network.kernel must be odd for {self.family} (got {self.kernel})")
        dims = 1 if self.family == "conv1d" else 2
        if self.input_shape is not None and (len(self.input_shape) != dims + 1
                                             or min(self.input_shape) < 1):
            raise ValueError(f"network.input_shape must be {dims + 1} positive sizes (channels"
                             f", {'length' if dims == 1 else 'height, width'}) for "
                             f"{self.family}, got {list(self.input_shape)}")
        return self


class ActivationSpec(_Model):
    """Activation functions hidden nodes may use; outputs are linear logits.

    An entry is a library name (`library.py`) or an expression over them
    (`expressions.py`, e.g. "relu(x) * tanh(x)"). With `expressions` > 0, a
    change-activation mutation evolves an expression instead of picking from `hidden`.
    """

    hidden: tuple[str, ...] = ("relu", "tanh", "sigmoid", "identity")
    initial: str = "relu"
    expressions: float = Field(0.0, ge=0.0, le=1.0)
    """Share of change-activation mutations that evolve the node's function as an
    expression (a subtree of it replaced, or a library function wrapped) instead."""
    expression_depth: int = Field(3, ge=1, le=6)
    """Most operators on any path of an evolved expression."""
    primitives: tuple[str, ...] = ("relu", "tanh", "sigmoid", "sin", "abs", "square",
                                   "gaussian", "neg")
    """Functions evolved expressions may call (besides + - * / max min)."""
    expression_search: Literal["mutate", "random"] = "mutate"
    """mutate: replace a random subtree of the node's function; random: draw a fresh
    random expression each time (random search over expressions)."""

    @field_validator("hidden", "initial")
    @classmethod
    def _known(cls, value: Any) -> Any:
        names = (value,) if isinstance(value, str) else value
        out = []
        for name in names:
            try:
                out.append(checked_activation(name))
            except ValueError as exc:
                raise ValueError(f"unknown activation {name!r}; known: "
                                 f"{', '.join(sorted(ACTIVATIONS))}, or an expression of "
                                 f"them ({exc})") from None
        return out[0] if isinstance(value, str) else tuple(out)

    @model_validator(mode="after")
    def _check(self) -> ActivationSpec:
        if not self.hidden:
            raise ValueError("hidden: list at least one activation function")
        if self.initial not in self.hidden:
            raise ValueError(f"initial activation {self.initial!r} is not in hidden")
        unknown = set(self.primitives) - set(unary_names())
        if unknown:
            raise ValueError(f"primitives: unknown {sorted(unknown)}; known: "
                             f"{', '.join(unary_names())}")
        return self


class MutationSpec(_Model):
    """Probabilities (per child) and sizes of the variation operators."""

    crossover: float = Field(0.5, ge=0.0, le=1.0)
    add_connection: float = Field(0.5, ge=0.0, le=1.0)
    add_connection_max: int = Field(4, ge=1)
    add_node: float = Field(0.2, ge=0.0, le=1.0)
    add_node_max: int = Field(1, ge=1)
    add_node_fan_in: int = Field(0, ge=0)
    add_node_fan_out: int = Field(0, ge=0)
    remove_connection: float = Field(0.3, ge=0.0, le=1.0)
    remove_connection_max: int = Field(4, ge=1)
    change_activation: float = Field(0.1, ge=0.0, le=1.0)
    taps: float = Field(0.0, ge=0.0, le=1.0)
    """conv families: switch kernel taps off or on (sparse kernels; `conv_geometry.py`)."""
    taps_max: int = Field(4, ge=1)
    dilation: float = Field(0.0, ge=0.0, le=1.0)
    """conv families: probability that a child gives up to `dilation_max` kernels another
    of `network.dilations`."""
    dilation_max: int = Field(2, ge=1)
    prune: float = Field(0.0, ge=0.0, le=1.0)
    """lamarckian only: probability that a child loses a share, drawn uniformly up to
    `prune_max`, of its inherited weights, those of smallest trained |w| (global
    magnitude pruning, Han et al. 2015; `operators/prune.py`; conv families: kernel taps
    and head links): a large trained network's lineage shrinks along the FLOPs axis,
    fine-tuned by each training."""
    prune_max: float = Field(0.5, gt=0.0, lt=1.0)


class TrainingSpec(_Model):
    """The budget each candidate is trained with."""

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(0.01, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    """The learning rate over each candidate's budget (`schedules.py`): constant; cosine,
    annealed to 0 at the last step; onecycle, a linear warm-up then a cosine anneal."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """The training loss's target: (1 - e) x the one-hot label + e / classes (Szegedy et al.
    2016); 0 is plain cross-entropy. Accuracy and the recorded val loss are unchanged."""
    shift: int = Field(0, ge=0)
    """conv families: each training sample moves by a random whole number of positions,
    at most this many, along each spatial axis (edge values repeat), drawn anew every
    epoch from the genome's generator: translation augmentation. 0 trains on the data as
    it is; validation and test samples never move."""
    finish_epochs: int = Field(0, ge=0)
    """The last generation breeds no children: it trains a copy of each front member this
    many epochs more (from the member's trained weights under lamarckian inheritance, else
    afresh; without `sparse_training`, so masks and FLOPs stay), and the copies join
    selection as children do. 0: the last generation is like the others."""
    finish_prune: tuple[Annotated[float, Field(gt=0.0, lt=1.0)], ...] = ()
    """lamarckian only: for each share r, the finishing generation also trains a copy of
    each front member with its smallest |w| pruned (`operators/prune.py`) to at most r x
    its FLOPs (Han et al.'s prune, then fine-tune), where pruning can get there."""
    refit_epochs: int = Field(0, ge=0)
    """After the last generation, each front member trains this many epochs more on the
    training and validation splits together, as scikit-learn's `refit` does once a search
    has chosen: the refit network (under a new id, the member's child; from its weights
    under lamarckian inheritance, else afresh; masks kept) replaces the member and keeps
    the validation accuracy and loss that selected it; its test accuracy is its own. 0: no
    refit. A run that `stop.val_accuracy` ends early does not refit."""
    initial_epochs: int = Field(0, ge=0)
    """Epochs of the first population's training (generation 0), one schedule over them;
    0: `epochs`, as every generation. With lamarckian inheritance the whole search
    starts from these weights."""
    inheritance: Literal["baldwinian", "lamarckian"] = "baldwinian"
    """baldwinian: every child starts from a fresh initialisation; lamarckian: trained
    weights are written back into the genome and children start from their parents'
    weights on the connections and nodes they share (`inheritance.py`)."""


REGROWTH = ("set", "rigl", "ctre")
"""The `sparse_training` methods that grow connections as well as removing them."""


class SparseTrainingSpec(_Model):
    """Pruning during each candidate's training (`sparse_training.py`); removed connections
    are disabled in the genome, so the FLOPs objective counts the pruned network."""

    method: Literal["none", "magnitude", "snip", "dissipating", "set", "rigl", "ctre"] = "none"
    density: float = Field(0.5, gt=0.0, le=1.0)
    """magnitude, snip: share of each network's starting connections kept."""
    start_epoch: float = Field(0.0, ge=0.0)
    end_epoch: float = Field(1.0, gt=0.0)
    interval: int = Field(10, ge=1)
    """magnitude: prune every `interval` steps from `start_epoch` to `end_epoch`; set, rigl,
    ctre: prune and regrow every `interval` steps in that window."""
    zeta: float = Field(0.3, gt=0.0, lt=1.0)
    """set, rigl, ctre: share of each network's connections replaced at the first update."""
    zeta_decay: Literal["cosine", "linear", "constant"] = "cosine"
    """set, rigl, ctre: how the replaced share falls to the end of the window."""
    watch_epochs: float = Field(1.0, gt=0.0)
    threshold: float = Field(0.05, gt=0.0)
    """dissipating: after `watch_epochs`, remove connections that never moved more than
    `threshold` x |initial weight|."""

    @model_validator(mode="after")
    def _schedule(self) -> SparseTrainingSpec:
        if self.end_epoch <= self.start_epoch:
            raise ValueError(f"end_epoch ({self.end_epoch}) must be after start_epoch "
                             f"({self.start_epoch})")
        return self


class ObjectivesSpec(_Model):
    """Hypervolume reference point (objectives are divided by it, so HV is in [0, 1])."""

    reference_error: float = Field(1.0, gt=0.0, le=1.0)
    reference_flops: float = Field(..., gt=0.0)

    @property
    def reference(self) -> tuple[float, float]:
        """The reference point in objective order (validation error, FLOPs)."""
        return (self.reference_error, self.reference_flops)


class EvaluationSpec(_Model):
    """Where and how candidates are trained."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(1, ge=1)
    workers: int = Field(0, ge=0)
    """Local Ray worker processes that take batches side by side when no cluster is given
    (`run --workers` overrides; 0: every batch in this process, one after another)."""
    batch_size: int = Field(16, ge=1)
    batched: bool = True
    memory_cap_mb: float = Field(4096.0, gt=0.0)
    timeout_s: float | None = Field(None, gt=0.0)
    """A batch still running after this many seconds is cancelled and its genomes recorded
    as failed (Ray evaluator; None: no limit)."""
    max_retries: int = Field(3, ge=0)
    """Times a batch is re-run after its worker process or node died (Ray evaluator)."""
    cpus_per_batch: float | None = Field(None, gt=0.0)
    """CPUs a batch asks Ray for (None: `threads`)."""
    gpus_per_batch: float | None = Field(None, gt=0.0)
    """GPUs a batch asks Ray for; below 1, several batches share a GPU (None: 1 when the
    cluster has GPUs and `device` is not cpu, else 0)."""
    cpu_nodes_too: bool = False
    """On a cluster with GPUs, also run batches on the nodes without one. Off by default:
    a CPU's rounding differs from a GPU's, so the search's path then depends on which
    node ran which batch."""

    @model_validator(mode="after")
    def _gpus(self) -> EvaluationSpec:
        g = self.gpus_per_batch
        if g is not None and self.device == "cpu":
            raise ValueError(f"gpus_per_batch is {g} but device is cpu")
        if g is not None and g > 1 and not g.is_integer():
            raise ValueError(f"gpus_per_batch above 1 must be a whole number, got {g}")
        return self


class StopSpec(_Model):
    """Optional early stop when a candidate reaches a validation accuracy."""

    val_accuracy: float | None = Field(None, gt=0.0, le=1.0)


class KStartsSpec(_Model):
    """K-starts: the initial population's masks chosen among K random ones per member.

    The starting topology (inputs -> `hidden` layers -> outputs, fully connected) is
    drawn K times with each connection kept with probability `density`; the K
    networks train together for `epochs` and the one that scores best on `criterion`
    becomes the member (`operators/kstarts.py`).
    """

    k: int = Field(4, ge=1)
    """masks tried per member (1: no choice, each member is one random mask)."""
    density: float | tuple[float, ...] = 0.3
    """each connection's probability of being kept; a list spreads the initial population
    over the FLOPs axis: member i of P takes entry floor(i x len / P) (children: the first)."""
    hidden: tuple[int, ...] = ()
    width: float | tuple[float, ...] = 1.0
    """share of each hidden layer's nodes (the first ceil(width x n)) a member starts with;
    a list spreads the initial population as `density` does: narrow dense starts beside
    wide sparse ones, whose genes share ids."""
    kernel: tuple[int, ...] = ()
    """conv families: each hidden layer's kernel size at the start (odd, up to
    `network.kernel`): its kernels keep their central taps, the rest off (e.g. 5-3-3)."""
    epochs: int = Field(1, ge=1)
    criterion: Literal["magnitude", "gradient", "magnitude_gradient", "val_loss"] = "magnitude"
    children: bool = False
    """Also for every child: K masks over the connections its mutation added (each kept
    with probability `density`), trained briefly, the best one kept."""

    @property
    def densities(self) -> tuple[float, ...]:
        """`density` as a tuple."""
        return self.density if isinstance(self.density, tuple) else (self.density,)

    def member_density(self, i: int, population: int) -> float:
        """The keep probability of the initial population's member i."""
        d = self.densities
        return d[i * len(d) // population]

    def member_width(self, i: int, population: int) -> float:
        """The share of each hidden layer the initial population's member i starts with."""
        w = self.width if isinstance(self.width, tuple) else (self.width,)
        return w[i * len(w) // population]

    @field_validator("density", "width")
    @classmethod
    def _densities(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        listed = value if isinstance(value, tuple) else (value,)
        if not listed or any(not 0.0 < d <= 1.0 for d in listed):
            raise ValueError("must be in (0, 1], or a non-empty list of such")
        return value

    @model_validator(mode="after")
    def _widths(self) -> KStartsSpec:
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden layer widths must be >= 1, got {list(self.hidden)}")
        return self


class CoevolutionSpec(_Model):
    """Cooperative co-evolution of activation functions (`operators/coevolution.py`)."""

    populations: Literal[1, 3] = 3
    """3: input-side, middle and output-side functions evolve apart; 1: one shared."""
    size: int = Field(8, ge=2)
    """Functions per population; it starts with `activations.hidden`, then random
    expressions."""
    granularity: Literal["node", "level", "population"] = "node"
    """What shares one function in a network: each node, each depth level, or each side."""
    credit: Literal["best", "mean"] = "best"
    """A function's fitness: the best or the mean validation accuracy of its partners."""
    reassign: float = Field(0.1, ge=0.0, le=1.0)
    """Chance that a child's node (level, side) draws a new function from its population."""


class SpeciationSpec(_Model):
    """NEAT speciation (Stanley & Miikkulainen, 2002) combined with NSGA-II
    (`operators/speciation.py`): the distance's coefficients, the adaptive threshold,
    stagnation and the protected elites of each species."""

    target_species: int = Field(4, ge=1)
    threshold: float = Field(3.0, gt=0.0)
    """Starting compatibility threshold; moves by `threshold_step` each generation toward
    `target_species` species (never below `threshold_step`)."""
    threshold_step: float = Field(0.3, gt=0.0)
    excess: float = Field(1.0, ge=0.0)
    disjoint: float = Field(1.0, ge=0.0)
    weight: float = Field(0.4, ge=0.0)
    """Mean |weight difference| of matching genes (Lamarckian weights), or the share of
    matching genes enabled in one genome only when the genomes carry no weights."""
    activation: float = Field(1.0, ge=0.0)
    """Share of shared hidden nodes whose activation functions differ."""
    max_stagnation: int = Field(15, ge=1)
    """A species whose best validation accuracy has not improved for this many
    generations is retired: it loses its protection and its members off the front go."""
    elitism: int = Field(1, ge=0)
    """Best members of each live species kept through selection (protects new structure)."""


class ParamSpec(_Model):
    """One meta-parameter to tune: a float or int range (optionally log-scaled) or choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _range(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"needs low < high, got low={self.low}, high={self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class MedianStoppingSpec(_Model):
    """Ray Tune's `MedianStoppingRule` for `evosparse tune --ray-address` (the Optuna pruner
    is not used there). From its `grace_period`-th generation on (generation 0 is the first),
    a trial is stopped when its best hypervolume is strictly below the median of the other
    trials' mean hypervolumes over the same generations; the rule judges a trial only when
    at least `min_samples_required` other trials have reached that generation."""

    grace_period: int = Field(2, ge=1)
    min_samples_required: int = Field(3, ge=1)


class TuneSpec(_Model):
    """What `evosparse tune` varies (dotted keys of this file) and how Optuna searches."""

    params: dict[str, ParamSpec] = Field(min_length=1)
    generations: int = Field(5, ge=0)
    sampler: str = "TPESampler"
    sampler_args: dict[str, Any] = {}
    pruner: str = "MedianPruner"
    pruner_args: dict[str, Any] = {}
    median_stopping: MedianStoppingSpec = MedianStoppingSpec()


class SearchSpace(_Model):
    """A complete, validated search space."""

    name: str = Field("search", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    population: int = Field(32, ge=2)
    generations: int = Field(20, ge=0)
    keep_checkpoints: int = Field(3, ge=1)
    dataset: DatasetSpec = DatasetSpec()
    network: NetworkSpec = NetworkSpec()
    activations: ActivationSpec = ActivationSpec()
    mutation: MutationSpec = MutationSpec()
    training: TrainingSpec = TrainingSpec()
    sparse_training: SparseTrainingSpec = SparseTrainingSpec()
    objectives: ObjectivesSpec
    evaluation: EvaluationSpec = EvaluationSpec()
    stop: StopSpec = StopSpec()
    kstarts: KStartsSpec | None = None
    speciation: SpeciationSpec | None = None
    coevolution: CoevolutionSpec | None = None
    tune: TuneSpec | None = None

    @model_validator(mode="after")
    def _kstarts_fit(self) -> SearchSpace:
        ks, net = self.kstarts, self.network
        if ks is not None and (len(ks.hidden) > net.max_levels or sum(ks.hidden) > net.max_hidden):
            raise ValueError(f"kstarts.hidden {list(ks.hidden)} does not fit network.max_levels "
                             f"{net.max_levels} / network.max_hidden {net.max_hidden}")
        if ks is not None and ks.kernel and (
                net.family == "mlp" or len(ks.kernel) != len(ks.hidden)
                or any(k % 2 == 0 or not 1 <= k <= net.kernel for k in ks.kernel)):
            raise ValueError(f"kstarts.kernel {list(ks.kernel)} needs a conv family and one odd "
                             f"size from 1 to network.kernel ({net.kernel}) per layer of "
                             f"kstarts.hidden {list(ks.hidden)}")
        st, epochs = self.sparse_training, self.training.epochs
        last = {"magnitude": st.end_epoch, "dissipating": st.watch_epochs, "set": st.end_epoch,
                "rigl": st.end_epoch, "ctre": st.end_epoch}.get(st.method, 0.0)
        if last > epochs:
            raise ValueError(f"sparse_training: the {st.method} schedule ends at epoch {last}, "
                             f"after training.epochs ({epochs})")
        if self.training.shift and self.network.family == "mlp":
            raise ValueError(f"training.shift ({self.training.shift}) moves samples along their "
                             "positions: it needs network.family conv1d or conv2d (an MLP's "
                             "inputs have none)")
        t = self.training
        for key, on in (("mutation.prune", self.mutation.prune > 0),
                        ("training.finish_prune", bool(t.finish_prune))):
            if on and t.inheritance != "lamarckian":
                raise ValueError(f"{key} prunes inherited trained weights: it needs "
                                 "training.inheritance: lamarckian")
        if t.finish_prune and not t.finish_epochs:
            raise ValueError("training.finish_prune prunes copies for the finishing "
                             "generation: it needs training.finish_epochs above 0")
        return self

    def to_yaml(self) -> str:
        """The resolved space as YAML (paths as strings), loadable by `load_space`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def fingerprint(self) -> str:
        """A hash of everything that determines the search except its length.

        `generations` is left out so that `resume --generations` may extend a run, and
        `tune`, which does not change a run.
        """
        body = self.model_dump(mode="json", exclude={"generations", "tune"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def with_overrides(self, **values: Any) -> SearchSpace:
        """A copy with fields replaced, re-validated; None values are ignored.

        A dict value updates a section: `with_overrides(evaluation={"device": "cuda"})`.
        """
        data = self.model_dump(mode="json")
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(data[key], dict):
                data[key].update({k: v for k, v in value.items() if v is not None})
            elif value is not None:
                data[key] = value
        return validate_space(data, "command-line overrides")


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if err["type"] == "missing":
        msg = "required key is missing"
    # a check across sections names its keys itself: the whole space is no help
    whole = not err["loc"]
    shown = "" if whole or err["type"] in ("extra_forbidden", "missing") else \
        f" (got {err.get('input')!r})"
    return f"{loc}: {msg}{shown}"


def validate_space(data: Any, source: str) -> SearchSpace:
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of keys at the top level")
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e) for e in exc.errors()]
        raise UserError(f"{source}: " + "; ".join(lines)) from None


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file.

    A relative dataset `path` is resolved against the space file's folder.
    Raises `UserError` naming the file (and the key) on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search-space file not found: {path}")
    space = validate_space(read_yaml(path), str(path))
    ds = space.dataset
    if ds.path is not None and not ds.path.is_absolute():
        resolved = (path.parent / ds.path).resolve()
        space = space.model_copy(update={"dataset": ds.model_copy(update={"path": resolved})})
    return space
