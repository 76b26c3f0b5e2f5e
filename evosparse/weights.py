"""Trained weights as safetensors: from a `SparseNetwork` to bytes and back, checked.

A file holds, per depth level k of the network (`network.py`), the tensors
`levels.k.weight` (masked: absent connections are exactly zero), `levels.k.mask`
(the connections, 0/1) and `levels.k.bias` (and, on a level with two-input units,
`levels.k.weight2` and `levels.k.bias2`: their second pre-activation), plus optional extras (the run
directory adds `test_predictions`). Its metadata names the format and the
SHA-256 of the genome it belongs to, so a weight file paired with the wrong or an
edited `genome.json` is refused. safetensors holds raw tensors only: loading
one executes nothing, unlike a pickle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import save
from safetensors.torch import load

from evosparse.conv_network import ConvNetwork
from evosparse.errors import UserError
from evosparse.families import MLP, Family
from evosparse.genome import Genome
from evosparse.network import SparseNetwork

FORMAT = "evosparse-weights-1"
TEST_PREDICTIONS = "test_predictions"


def genome_digest(genome: Genome) -> str:
    """SHA-256 of the genome's identity and canonical arrays: what a weight file is bound to.

    Hashes the array bytes (fixed dtypes, canonical order from `Genome.build`), not the
    JSON text: it runs for every evaluated genome.
    """
    h = hashlib.sha256(json.dumps([genome.genome_id, genome.generation,
                                   list(genome.parents)]).encode())
    kernels = [a for a in (genome.conn_taps, genome.conn_dilation) if a is not None]
    for a in (*genome.nodes, *genome.conns, *kernels):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def network_tensors(net: SparseNetwork | ConvNetwork) -> dict[str, torch.Tensor]:
    """The network's masked weights, masks and biases, on the CPU."""
    out: dict[str, torch.Tensor] = {}
    for k, lv in enumerate(net.levels):
        out[f"levels.{k}.weight"] = (lv.weight * lv.mask).detach().cpu().contiguous()
        out[f"levels.{k}.mask"] = lv.mask.to(torch.uint8).cpu().contiguous()
        if lv.bias is not None:
            out[f"levels.{k}.bias"] = lv.bias.detach().cpu().contiguous()
        if lv.weight2 is not None:  # two-input units' second pre-activation
            out[f"levels.{k}.weight2"] = lv.second_weight().detach().cpu().contiguous()
        if lv.bias2 is not None:
            out[f"levels.{k}.bias2"] = lv.bias2.detach().cpu().contiguous()
    return out


def model_bytes(
    net: SparseNetwork | ConvNetwork, extra: dict[str, torch.Tensor] | None = None,
    digest: str = ""
) -> bytes:
    """The network's weights (and `extra` tensors) as one safetensors file."""
    return _save({**network_tensors(net), **(extra or {})}, digest)


def _save(tensors: dict[str, torch.Tensor], digest: str) -> bytes:
    """The file's bytes. Written through safetensors' numpy writer: the same bytes as its
    torch writer, in a quarter of the time (about 30 vs 100 us a network), which counts
    when every evaluated genome is saved. One metadata key: safetensors orders several
    keys differently from run to run."""
    info = json.dumps({"format": FORMAT, "genome_sha256": digest}, sort_keys=True)
    return save({k: v.numpy() for k, v in tensors.items()}, metadata={"evosparse": info})


def restamped(data: bytes, genome: Genome) -> bytes:
    """A weight file's bytes bound to `genome` instead: for a genome whose new genes got
    their registry ids after training (the tensors do not depend on innovation ids)."""
    tensors, _ = read_model(data, f"trained weights of genome {genome.genome_id}")
    return _save(tensors, genome_digest(genome))


def read_model(data: bytes, source: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file's bytes; a damaged file is a `UserError`."""
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        metadata = json.loads(header.get("evosparse", "{}"))
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise UserError(f"{source}: not a valid safetensors file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{source}: not an evosparse weight file "
                        f"(format {metadata.get('format')!r}, expected {FORMAT!r})")
    return tensors, metadata


def network_from_model(
    genome: Genome, data: bytes, source: str, family: Family = MLP
) -> tuple[SparseNetwork | ConvNetwork, dict[str, torch.Tensor]]:
    """Rebuild the trained network of `genome` from a weight file's bytes; also return
    the file's tensors (its extras: `test_predictions`, `input.mean`, ...).

    The file must match the genome exactly: its digest when it records one, the
    number of levels, every shape, and every mask (so a connection added to or
    dropped from either file is caught); weights outside the mask must be zero.
    """
    tensors, metadata = read_model(data, source)
    recorded = metadata.get("genome_sha256", "")
    if recorded and recorded != genome_digest(genome):
        raise UserError(f"{source} belongs to another genome (or the genome file was edited): "
                        "its genome_sha256 does not match")
    bias = "levels.0.bias" in tensors
    net = family.compile(genome, bias, torch.Generator().manual_seed(0))
    assert isinstance(net, SparseNetwork | ConvNetwork)
    expected = network_tensors(net)
    names = {n for n in tensors if n.startswith("levels.")}
    if names != set(expected):
        missing, unknown = sorted(set(expected) - names), sorted(names - set(expected))
        raise UserError(f"{source} does not fit the genome: missing tensors {missing}, "
                        f"unexpected tensors {unknown}")
    for name, want in expected.items():
        got = tensors[name]
        if got.shape != want.shape:
            raise UserError(f"{source}: tensor {name} has shape {tuple(got.shape)}, "
                            f"the genome needs {tuple(want.shape)}")
        if name.endswith(".mask") and not torch.equal(got, want):
            raise UserError(f"{source}: tensor {name} does not match the genome's connections")
    with torch.no_grad():
        for k, lv in enumerate(net.levels):
            w = tensors[f"levels.{k}.weight"].to(torch.float32)
            if not torch.isfinite(w).all() or torch.any(w[lv.mask == 0] != 0):
                raise UserError(f"{source}: levels.{k}.weight has non-finite values or "
                                "weights outside the genome's connections")
            lv.weight.copy_(w)
            if lv.bias is not None:
                lv.bias.copy_(tensors[f"levels.{k}.bias"])
            if lv.weight2 is not None:
                w2 = tensors[f"levels.{k}.weight2"].to(torch.float32)
                if not torch.isfinite(w2).all() or torch.any(w2[lv.mask * lv.two == 0] != 0):
                    raise UserError(f"{source}: levels.{k}.weight2 has non-finite values or "
                                    "weights outside the genome's two-input connections")
                lv.weight2.copy_(w2)
            if lv.bias2 is not None:
                lv.bias2.copy_(tensors[f"levels.{k}.bias2"])
    return net.eval(), tensors


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or a `UserError` naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
