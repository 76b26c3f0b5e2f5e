"""Many conv genomes trained as a few programs: grouped convolutions over padded channels.

Every genome's `ConvNetwork` is laid out on one padded grid: level l's channels at
scale r take the same slots in every genome, so a source scale's maps have the same
columns in every genome, and block (l, r, a) is one grouped convolution (`groups` =
genomes) of weight [genomes x slots, columns, taps...] times its mask. Genome i's
minibatch x[rows[i]] is its own input channels, so one sample index runs every genome
on its own sample. Maps are kept as one row per padded slot (`_logits`), and slots per
genome are rounded to what this CPU's convolutions run fastest (`_slots`). Each activation function
runs once per group, on the slots that use it gathered across genomes (a two-input unit
also gathers the second pre-activation, from the blocks' second kernels); padding slots
have all-zero masks in and out. Initial weights are each genome's own `ConvNetwork`'s,
so a genome follows the trajectory it follows alone, up to float rounding; `unbatch`
copies them back. `ConvPrograms` splits a batch into programs of alike genomes
(`batched.Programs`; autograd only), as the padding of one program for all grows with
how unlike they are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evosparse.activations import arity, torch_activation
from evosparse.batched import Programs
from evosparse.conv_geometry import ConvGeometry
from evosparse.conv_network import Captured, ConvNetwork, tap_signal
from evosparse.genome import Genome
from evosparse.library import in_place
from evosparse.network import Layout, Signal, masked_sums
from evosparse.sorted_activations import SortedActivation

_UNFOLD_BELOW = 8
"""Blocks reading the input's scale with fewer columns than this per genome run as
`_unfolded`: with maps as rows, `batched_eval.py`'s 64 random CNNs trained 5 epochs in
8.4 s instead of 12.0 s (`mnist1d_conv.yaml`), 1.9 s instead of 3.0 s (`digits_conv.yaml`)."""


def _slots(width: int) -> int:
    """Slots per genome of a padded group whose widest genome has `width` channels: the
    next 8 or multiple of 16 where that pads by at most half, else `width`. This CPU's
    grouped convolutions (oneDNN, forward and backward, 64 genomes, 64 samples) ran 2-5x
    slower with 6, 10, 12 or 17 channels per genome than with 8 or 16: 16 out of 16
    channels (4.4 ms) beat 10 out of 10 (9.5 ms)."""
    aligned = 8 if width <= 8 else 16 * -(-width // 16)
    return aligned if 2 * aligned <= 3 * width else width


def _rows_pay(slots: int, columns: int) -> bool:
    """Whether a block of `slots` out of `columns` channels per genome convolves fastest
    on the program's maps as they are (else: channels last, transposed there and back).
    Measured on this CPU (64 genomes, 64 samples, length 20 -> 10, forward and backward):
    as they are, 16 out of 8 / 16 / 32 / 48 channels took 3.3 / 4.5 / 7.9 / 11.6 ms,
    channels last 2.7 / 3.8 / 7.1 / 11.2 ms plus its transposes (one of 1,024 x 1,280
    floats took 1.15 ms; four a block, estimated 3.5 ms); 32 out of 16,
    20.1 ms against 10.9 ms; 8 out of 16, 7.3 against 3.0 ms."""
    return (slots == 16 and columns in (8, 16, 32, 48)) or (slots == 8 and columns == 8)


def _unfolded(x: torch.Tensor, w: torch.Tensor, stride: int, dilation: int = 1,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """What `groups=genomes` convolution with "same" padding gives, in the program's
    layout ([genomes, out, samples, *out size]), of maps x [genomes, in, samples, *size]
    by each genome's own kernels w [genomes, out, in, *taps] (of `dilation`) plus `bias`
    [genomes, out] if given, as one batched matrix product of unfolded patches. Where a
    genome has one or two input channels (the raw input, which needs no gradient) the
    grouped convolution runs a slow kernel on this CPU: forward and backward of 24
    genomes' 1 -> 16 channel blocks on a length-40 signal took 9.4 ms grouped, 2.8 ms
    unfolded; with 8 or more input channels per genome the grouped convolution is the
    faster."""
    n, c_in, s, *size = x.shape
    dims, k, c_out = len(size), w.shape[-1], w.shape[1]
    u = F.pad(x, (dilation * (k // 2),) * (2 * dims))
    for d in range(dims):
        u = u.unfold(3 + d, dilation * (k - 1) + 1, stride)  # [.., *out size, *spans]
    u = u[(..., *[slice(None, None, dilation)] * dims)]  # [.., *out size, *taps]
    out_size = u.shape[3 : 3 + dims]
    u = u.permute(0, 1, *range(3 + dims, 3 + 2 * dims), 2, *range(3, 3 + dims)).reshape(
        n, c_in * k**dims, -1)  # [genomes, in x taps, samples x out positions]
    w = w.reshape(n, c_out, -1)
    y = torch.bmm(w, u) if bias is None else torch.baddbmm(bias[:, :, None], w, u)
    return y.view(n, c_out, s, *out_size)


def _per_sample(m: torch.Tensor) -> torch.Tensor:
    """Maps [genomes, channels, samples, *size] as [samples, genomes, channels, *size]."""
    return m.movedim(2, 0)


def _sum(total: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    return term if total is None else total + term


def _layout(net: ConvNetwork) -> list[dict[int, tuple[int, list[tuple[int, int]],
                                                  list[tuple[str, int]]]]]:
    """Per level: scale -> (group size, its (block, source scale) pairs, its runs)."""
    out, start = [], 0
    for end in net.level_ends:
        out.append({r: (sum(w for _, w in runs), pairs, runs)
                    for r, pairs, runs in net.plan[start:end]})
        start = end
    return out


class BatchedConvNetworks(nn.Module):
    """Conv genomes of one geometry as one padded program (see the module docstring)."""

    def __init__(self, nets: list[ConvNetwork], geometry: ConvGeometry) -> None:
        super().__init__()
        self.geometry = g = geometry
        self._nets = nets
        bias = nets[0].levels[-1].bias is not None
        layouts = [_layout(n) for n in self._nets]
        n_levels = max(len(lay) for lay in layouts)
        scales = range(g.scales + 1)
        n, k = len(nets), g.kernel
        names = sorted({name for lay in layouts for level in lay for *_, runs in level.values()
                        for name, _ in runs})
        self._fns = [torch_activation(name) for name in names]
        self._arity = [arity(name) for name in names]
        self._in_place = [in_place().get(name) for name in names]
        # padded column of each genome's own column, per scale, grown level by level
        cols = [[list(range(g.shape[0])) if a == 0 else [] for a in scales] for _ in nets]
        columns = [g.shape[0]] + [0] * g.scales
        self._steps: list[list[tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]]]
        self._steps = []
        """Per level, per padded group: its scale, slots per genome, (source scale,
        dilation) of its blocks and the activation functions its genomes use with how
        many flat slots each has (padding with the first; buffer `order{group}` gathers
        them function by function across genomes, `inverse{group}` puts the results back
        in slot order)."""
        self._copies: list[tuple[int, int, int, int, torch.Tensor, torch.Tensor]] = []
        """(genome, its block, padded weight, padded group, the block's rows and columns in
        the padded weight): where `unbatch` finds each block's weights."""
        weights, masks, biases = [], [], []
        self.weights2 = nn.ParameterDict()
        """Second kernels of blocks into groups with two-input units, by block index
        (masked by the block's mask times buffer `two{block}`, the two-input slots)."""
        self.biases2 = nn.ParameterDict()
        """Second biases of those groups, by group index (with bias only)."""
        for lv in range(n_levels):
            step, rows_of = [], {}
            for r in scales:
                members = [i for i, lay in enumerate(layouts) if lv < len(lay) and r in lay[lv]]
                if not members:
                    continue
                d = _slots(max(layouts[i][lv][r][0] for i in members))
                slots: list[list[int]] = [[] for _ in names]  # each function's flat slots
                sources = sorted({(a, self._nets[i].levels[b].dilation) for i in members
                                  for b, a in layouts[i][lv][r][1]})  # (scale, dilation)
                b_pad, b2_pad, two = torch.zeros(n, d), torch.zeros(n, d), torch.zeros(n, d)
                blocks = {(a, gap): tuple(torch.zeros((n, d, columns[a]) + (k,) * g.dims)
                                          for _ in range(3))
                          for a, gap in sources}  # weights, masks, second kernels
                for i in members:
                    _, pairs, runs = layouts[i][lv][r]
                    rows = torch.arange(layouts[i][lv][r][0])
                    rows_of[i, r] = rows
                    start = 0
                    for name, w in runs:
                        slots[names.index(name)] += range(i * d + start, i * d + start + w)
                        start += w
                    for b, a in pairs:
                        blk = self._nets[i].levels[b]
                        at, key = torch.tensor(cols[i][a]), (a, blk.dilation)
                        blocks[key][0][i][rows[:, None], at] = blk.weight.detach()
                        blocks[key][1][i][rows[:, None], at] = blk.mask
                        if blk.bias is not None:
                            b_pad[i, rows] = blk.bias.detach()
                        if blk.weight2 is not None:  # two-input units
                            two[i, rows] = blk.two.flatten()
                            blocks[key][2][i][rows[:, None], at] = blk.weight2.detach()
                        if blk.bias2 is not None:
                            b2_pad[i, rows] = blk.bias2.detach()
                        self._copies.append((i, b, len(weights) + sources.index(key),
                                             len(biases), rows, at))
                for key in sources:
                    if two.any():
                        self.weights2[str(len(weights))] = nn.Parameter(blocks[key][2])
                        self.register_buffer(f"two{len(weights)}", two.view(
                            n, d, *[1] * (blocks[key][1].dim() - 2)))
                    weights.append(nn.Parameter(blocks[key][0]))
                    masks.append(blocks[key][1])
                if two.any() and bias:
                    self.biases2[str(len(biases))] = nn.Parameter(b2_pad)
                biases.append(nn.Parameter(b_pad))
                used = [f for f in range(len(names)) if slots[f]]
                taken = {x for f in used for x in slots[f]}  # padding joins the first function
                slots[used[0]] += [x for x in range(n * d) if x not in taken]
                order = np.concatenate([slots[f] for f in used])
                self.register_buffer(f"order{len(biases) - 1}", torch.from_numpy(order))
                self.register_buffer(f"inverse{len(biases) - 1}", torch.from_numpy(
                    np.argsort(order)))
                step.append((r, d, sources, [(f, len(slots[f])) for f in used]))
            for (i, r), rows in rows_of.items():  # the level's slots join their scale's columns
                cols[i][r] += (columns[r] + rows).tolist()
            for r, d, *_ in step:
                columns[r] += d
            self._steps.append(step)
        offset, bins = np.cumsum([0, *columns]), g.bins
        n_out = self._nets[0].levels[-1].weight.shape[0]
        head_w = torch.zeros(n, n_out, offset[-1] * bins)
        head_m = torch.zeros(n, n_out, offset[-1] * bins)
        head_b = torch.zeros(n, n_out)
        self._head_cols = []
        for i, net in enumerate(self._nets):
            at = torch.tensor([b * offset[-1] + offset[a] + c for a in scales
                               for c in cols[i][a] for b in range(bins)])  # bin-major
            head = net.levels[-1]
            head_w[i][:, at], head_m[i][:, at] = head.weight.detach(), head.mask
            if head.bias is not None:
                head_b[i] = head.bias.detach()
            self._head_cols.append(at)
        self.weights = nn.ParameterList([*weights, nn.Parameter(head_w)])
        """Each padded block's weights [genomes, slots, columns, taps...], the head's last."""
        self.biases = nn.ParameterList([*biases, nn.Parameter(head_b)] if bias else [])
        """Each padded group's biases [genomes, slots], the head's last (none without bias)."""
        for j, m in enumerate([*masks, head_m]):
            self.register_buffer(f"mask{j}", m)
        for r in scales:  # [positions, bins]
            self.register_buffer(f"pooling{r}", torch.from_numpy(g.pooling(r)),
                                 persistent=False)
        self._capture = False
        self._captured: dict[int, Captured] = {}

    def padded_work(self) -> int:
        """Multiply-adds of one sample through the padded program (every weight of every
        block at its output positions, the head's once): what padding costs."""
        at = [self.geometry.positions(r) for step in self._steps for r, _, sources, *_ in step
              for _ in sources]
        return sum(w.numel() * p for w, p in zip(self.weights, [*at, 1], strict=True))

    def _mask(self, j: int) -> torch.Tensor:
        return getattr(self, f"mask{j}")

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [samples, genomes, features] -> logits [samples, genomes, outputs].

        Maps are kept as [genomes, channels, samples, *size]: one contiguous row of
        samples x positions per padded slot, genome by genome. A level's grouped
        convolution reads them as one image of genomes x channels planes (samples x
        length, or a volume of samples x height x width) through kernels one sample
        tall, so samples never mix, and writes its channels in the same layout, which
        is the rows `SortedActivation` gathers by function: no map is ever transposed.
        On this CPU `batched_eval.py`'s 64 random CNNs trained 5 epochs in 9.0-10.4 s
        against 12.0-12.4 s with maps kept channels last (`mnist1d_conv.yaml`, RigL on),
        1.85 s against 2.7-2.9 s (`digits_conv.yaml`); a search's population of 24
        (`--run`) about as fast as before (README)."""
        g, n = self.geometry, len(self._nets)
        s = x.shape[0]
        maps = [x.reshape(s, n, *g.shape).movedim(0, 2).contiguous()] + [
            x.new_zeros((n, 0, s, *g.size(r))) for r in range(1, g.scales + 1)]
        w_at = group = 0
        for step in self._steps:
            new: dict[int, torch.Tensor] = {}
            for r, d, sources, used in step:
                pre = pre2 = None
                kernels = []
                for a, gap in sources:  # the group's biases join its first convolution
                    w = self.weights[w_at] * self._mask(w_at)
                    kernels.append((w_at, w, a, gap))
                    pre = _sum(pre, self._convolve(maps[a], w, a, r, gap, self.biases[group]
                                                   if self.biases and pre is None else None))
                    if str(w_at) in self.weights2:  # two-input units' second pre-activation
                        w2 = self.weights2[str(w_at)] * (self._mask(w_at)
                                                         * getattr(self, f"two{w_at}"))
                        pre2 = _sum(pre2, self._convolve(maps[a], w2, a, r, gap, None))
                    w_at += 1
                assert pre is not None
                if str(group) in self.biases2:
                    pre2 = pre2 + self.biases2[str(group)].view(n, d, *[1] * (1 + g.dims))
                if len(used) == 1:  # padding slots are read by nothing: no need to skip them
                    out = self._activate(used[0][0], pre, pre2)
                else:  # each function on its own slots, gathered across genomes, put back
                    out = SortedActivation.apply(
                        pre.reshape(1, n * d, -1),
                        None if pre2 is None else pre2.reshape(1, n * d, -1),
                        getattr(self, f"order{group}"), getattr(self, f"inverse{group}"),
                        [(w, self._fns[f], self._arity[f], self._in_place[f]) for f, w in used])
                new[r] = out.view(n, d, s, *g.size(r))
                if self._capture:  # RigL reads the kernels' dense gradient, CTRE the maps
                    for j, w, a, gap in kernels:
                        w.retain_grad()
                        self._captured[j] = (w, _per_sample(maps[a]), 1 << (r - a), gap,
                                             _per_sample(new[r]))
                group += 1
            maps = [m if r not in new else new[r] if not m.shape[1] else torch.cat(
                [m, new[r]], dim=1) for r, m in enumerate(maps)]
        features = torch.cat([m.reshape(n, m.shape[1], s, g.positions(r))
                              @ getattr(self, f"pooling{r}") for r, m in enumerate(maps)],
                             dim=1)  # [genomes, columns, samples, bins]
        head = self.weights[-1] * self._mask(len(self.weights) - 1)
        logits = torch.einsum("gcsb,gobc->sgo", features, head.view(
            *head.shape[:2], g.bins, -1))
        return logits + self.biases[-1] if self.biases else logits

    def _convolve(self, m: torch.Tensor, w: torch.Tensor, a: int, r: int, dilation: int,
                  bias: torch.Tensor | None) -> torch.Tensor:
        """Each genome's maps m at scale a through its own kernels w (of `dilation`) into
        scale r, both [genomes, channels, samples, *size], plus `bias` [genomes, out] if
        given (inside the convolution: a separate sum over the maps cost 6% of a step)."""
        g = self.geometry
        n, c, s, *size = m.shape
        if a == 0 and c < _UNFOLD_BELOW:  # the input's scale: its few channels first
            return _unfolded(m, w, 1 << r, dilation, bias)
        conv = F.conv2d if g.dims == 1 else F.conv3d  # samples as one more (height 1) axis
        image, kernels = m.reshape(1, n * c, s, *size), w.flatten(0, 1).unsqueeze(2)
        rows = _rows_pay(w.shape[1], c)
        if not rows:
            last = torch.channels_last if g.dims == 1 else torch.channels_last_3d
            image, kernels = image.contiguous(memory_format=last), kernels.contiguous(
                memory_format=last)
        y = conv(image, kernels, None if bias is None else bias.flatten(),
                 stride=(1, *[1 << (r - a)] * g.dims),
                 padding=(0, *[dilation * (g.kernel // 2)] * g.dims),
                 dilation=(1, *[dilation] * g.dims), groups=n)
        return (y if rows else y.contiguous()).view(n, w.shape[1], s, *y.shape[3:])

    def _activate(self, f: int, pre: torch.Tensor, pre2: torch.Tensor | None) -> torch.Tensor:
        """Function f on the pre-activations; a two-input unit reads the second too."""
        if self._arity[f] == 1:
            return self._fns[f](pre)
        assert pre2 is not None
        return self._fns[f](pre, pre2)

    def sample_losses(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                      smoothing: float = 0.0) -> torch.Tensor:
        """[genomes, samples]: genome i's cross-entropy on x[rows[i]], y[rows[i]] with
        `smoothing` label smoothing."""
        logits = self._logits(x[rows.T])
        loss = F.cross_entropy(logits.flatten(0, 1), y[rows.T].flatten(), reduction="none",
                               label_smoothing=smoothing)
        return loss.view(rows.shape[1], rows.shape[0]).T

    def losses(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
               smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy [genomes] of each genome on its samples x[rows[i]], y[rows[i]]."""
        return self.sample_losses(x, y, rows, smoothing).mean(dim=1)

    def direct(self) -> bool:
        """Autograd runs every step (no hand-written backward for convolutions)."""
        return False

    def unbatch(self, i: int) -> ConvNetwork:
        """Genome i's network (on the CPU) holding its current trained weights."""
        net = self._nets[i]
        with torch.no_grad():
            for genome, b, j, group, rows, at in self._copies:
                if genome != i:
                    continue
                blk = net.levels[b]
                blk.weight.copy_(self.weights[j][i][rows[:, None], at].cpu())
                blk.mask.copy_(self._mask(j)[i][rows[:, None], at].cpu())  # pruned taps
                if blk.bias is not None:
                    blk.bias.copy_(self.biases[group][i, rows].cpu())
                if blk.weight2 is not None:
                    blk.weight2.copy_(self.weights2[str(j)][i][rows[:, None], at].cpu())
                if blk.bias2 is not None:
                    blk.bias2.copy_(self.biases2[str(group)][i, rows].cpu())
            head = net.levels[-1]
            head.weight.copy_(self.weights[-1][i][:, self._head_cols[i]].cpu())
            if head.bias is not None:
                head.bias.copy_(self.biases[-1][i].cpu())
        return net

    def weight_blocks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(weight, mask) of each padded kernel block, [genomes, slots, columns, taps...]:
        what in-training pruning changes (as `ConvNetwork.weight_blocks`)."""
        return [(w, self._mask(j)) for j, w in enumerate(self.weights[:-1])]

    def growth_layout(self) -> list[Layout]:
        """Each genome's `ConvNetwork.growth_layout` placed in the padded kernel blocks
        (padding may not grow; its ids are -1)."""
        t, n = self.geometry.taps, len(self._nets)
        out = []
        for w in self.weights[:-1]:
            d, columns = w.shape[1], w.shape[2]
            out.append((torch.zeros(n, d, columns, t, dtype=torch.bool),
                        torch.full((n, d), -1, dtype=torch.int64),
                        torch.full((n, columns, t), -1, dtype=torch.int64)))
        layouts = [net.growth_layout() for net in self._nets]
        for i, b, j, _, rows, at in self._copies:
            allowed, dst_ids, cols = layouts[i][b]
            out[j][0][i][rows[:, None], at] = allowed[0].reshape(len(rows), len(at), t).cpu()
            out[j][1][i, rows] = dst_ids[0]
            out[j][2][i, at] = cols[0].reshape(len(at), t)
        device = self.weights[0].device
        return [(a.to(device), r, c.flatten(1)) for a, r, c in out]

    def capture(self, on: bool) -> None:
        """Keep each kernel block's masked weight in the next forward passes (or stop)."""
        self._capture, self._captured = on, {}

    def signals(self) -> list[Signal]:
        """Per kernel block, as `ConvNetwork.signals`."""
        return [tap_signal(self._captured[j], self.geometry) for j in range(len(self.weights) - 1)]

    def connection_sums(self, grads: dict[nn.Parameter, torch.Tensor]) -> torch.Tensor:
        """[genomes, 4]: `ConvNetwork.connection_sums` of each genome, in order."""
        out = torch.zeros(len(self._nets), 4)
        for j, w in enumerate(self.weights):
            grad = grads.get(w)
            out += masked_sums(w.reshape(w.shape[0], w.shape[1], -1),
                               self._mask(j).reshape(w.shape[0], w.shape[1], -1),
                               None if grad is None else grad.reshape(w.shape[0], w.shape[1], -1))
        return out


def own_work(net: ConvNetwork) -> int:
    """Multiply-adds of one sample through a genome's own dense blocks (as `padded_work`)."""
    g = net.geometry
    at = [g.positions(r) for r, pairs, _ in net.plan for _ in pairs]
    return sum(b.weight.numel() * p for b, p in zip(net.levels, [*at, 1], strict=True))


SPLIT_SAVING = 0.75
"""A program is cut in two (its members in order of their own work) when the halves'
padded work is at most this share of its own (`ConvPrograms`): on a search's population
the first cut saved 30%, on the benchmark's random CNNs 13% (and cost time there)."""


def _programs(nets: list[ConvNetwork], geometry: ConvGeometry
              ) -> list[tuple[np.ndarray, BatchedConvNetworks]]:
    """Positions of `nets` per program, with the program: nets of equal depth, in order
    of their own work, halved while halving saves enough padded work (`SPLIT_SAVING`)."""
    depth = np.array([len(n.level_ends) for n in nets])
    work = np.array([own_work(n) for n in nets])

    def program(members: np.ndarray) -> tuple[np.ndarray, BatchedConvNetworks]:
        return members, BatchedConvNetworks([nets[i] for i in members], geometry)

    def cut(whole: tuple[np.ndarray, BatchedConvNetworks]
            ) -> list[tuple[np.ndarray, BatchedConvNetworks]]:
        if len(whole[0]) < 2:
            return [whole]
        halves = [program(h) for h in np.array_split(whole[0], 2)]
        if sum(p.padded_work() for _, p in halves) > SPLIT_SAVING * whole[1].padded_work():
            return [whole]
        return [part for half in halves for part in cut(half)]

    out = []
    for d in np.unique(depth):
        same = np.flatnonzero(depth == d)
        out += cut(program(same[np.argsort(work[same], kind="stable")]))
    return out


class ConvPrograms(Programs):
    """Conv genomes as a few `BatchedConvNetworks` programs side by side (`_programs`).

    One program pads every genome to the union of all their layouts. Genomes of unequal
    depth share little, so each depth gets its own program (as `batched.BatchedNetworks`
    does), and a program whose genomes differ in size is halved where that saves a
    quarter of its padded work. On the population of a `mnist1d_conv.yaml` search (24
    genomes; `benchmarks/batched_eval.py --run`) one program held 2.5x the genomes' own
    work and trained no faster than one by one; as programs of 5, 5, 5 and 9, 1.5-1.9x
    faster. Alike genomes (the benchmark's random CNNs) stay one program."""

    def __init__(self, genomes: list[Genome], bias: bool, generators: list[torch.Generator],
                 geometry: ConvGeometry) -> None:
        nets = [ConvNetwork(x, bias, gen, geometry)
                for x, gen in zip(genomes, generators, strict=True)]
        programs = _programs(nets, geometry)
        super().__init__([p for _, p in programs], [m for m, _ in programs])

    def unbatch(self, i: int) -> ConvNetwork:
        """Genome i's network (on the CPU) holding its current trained weights."""
        group, pos = self._where[i]
        return self.groups[group].unbatch(pos)
