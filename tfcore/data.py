"""Data for the lessons: a character tokenizer, the bundled Shakespeare corpus, synthetic tasks.

Everything here works offline: the corpus ships inside the package (``tfcore/corpus``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources

import torch
from torch import Tensor

from tfcore._checks import require_integer_dtype, require_ndim, require_number, require_positive_int


def load_shakespeare() -> str:
    """The tiny Shakespeare corpus (about 1.1 M characters, public domain) as one string."""
    with resources.files("tfcore").joinpath("corpus/tinyshakespeare.txt.gz").open("rb") as f:
        return gzip.decompress(f.read()).decode("utf-8")


@dataclass
class CharTokenizer:
    """One token per distinct character of a text, ids in sorted character order."""

    chars: list[str]

    def __post_init__(self) -> None:
        chars = list(self.chars)
        if not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError(f"chars must be a non-empty list of single characters, got {chars[:10]!r}")
        if len(set(chars)) != len(chars):
            repeated = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must not repeat a character (each needs one id), got {repeated} twice or more")

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {text!r:.40}")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        """str -> (len(text),) int64 ids; unknown characters raise a ValueError naming them."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {unknown[:10]}")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        """(T,) ids in [0, vocab_size) -> str (a tensor or a list of ints)."""
        if isinstance(ids, str):
            raise TypeError("ids must be a (T,) tensor or a list of integer ids, got a str: encode text, decode ids")
        ids = torch.as_tensor(ids)
        if ids.numel() == 0:
            return ""
        require_ndim("ids", ids, 1, "(T,)")
        require_integer_dtype("ids", ids, "integer ids")
        values = ids.tolist()
        bad = next(((n, i) for n, i in enumerate(values) if not 0 <= i < len(self.chars)), None)
        if bad is not None:
            raise ValueError(f"ids must lie in [0, vocab_size={len(self.chars)}), got {bad[1]} at position {bad[0]}")
        return "".join(self.chars[i] for i in values)


def shakespeare_splits(val_fraction: float = 0.1) -> tuple[CharTokenizer, Tensor, Tensor]:
    """(tokenizer, train ids, validation ids): the last ``val_fraction`` (in (0, 1)) of the text is held out."""
    require_number("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
    text = load_shakespeare()
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    n_train = int(len(ids) * (1 - val_fraction))
    return tok, ids[:n_train], ids[n_train:]


def random_batch(data: Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None) -> Tensor:
    """Random windows of ``block_size + 1`` ids from a 1-D corpus: (B, block_size + 1).

    Feed ``batch[:, :-1]`` and predict ``batch[:, 1:]`` (or use ``lm_loss`` on the whole window).
    """
    require_ndim("data", data, 1, "(N,)")
    require_integer_dtype("data", data, "token ids")
    require_positive_int("batch_size", batch_size)
    require_positive_int("block_size", block_size)
    if len(data) <= block_size + 1:
        raise ValueError(f"data has {len(data)} tokens, too few for block_size={block_size}")
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    return torch.stack([data[s : s + block_size + 1] for s in starts.tolist()])


def induction_batch(batch_size: int, half_len: int, vocab_size: int, generator: torch.Generator | None = None,
                    min_half_len: int | None = None, return_lengths: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Repeated random sequences (B, 2 * half_len): the second half copies the first.

    A model can only predict the second half by finding where the current token appeared
    before and copying what followed it: the job of an induction head.

    With a fixed half_len the copy always sits half_len positions back, and a model with
    absolute positions can learn that offset instead of induction. ``min_half_len`` varies it:
    row b then ends with a random segment of length L_b in [min_half_len, half_len] written
    twice, after 2 (half_len - L_b) random filler tokens. ``return_lengths``: also return L (B,).
    """
    for name, value in (("batch_size", batch_size), ("half_len", half_len), ("vocab_size", vocab_size)):
        require_positive_int(name, value)
    if min_half_len is None:
        first = torch.randint(vocab_size, (batch_size, half_len), generator=generator)
        tokens, lengths = torch.cat((first, first), dim=1), torch.full((batch_size,), half_len)
    else:
        if not 1 <= min_half_len <= half_len:
            raise ValueError(f"min_half_len must lie in [1, half_len={half_len}], got {min_half_len}")
        t = 2 * half_len
        tokens = torch.randint(vocab_size, (batch_size, t), generator=generator)
        lengths = torch.randint(min_half_len, half_len + 1, (batch_size,), generator=generator)
        j = torch.arange(t)[None, :]
        second = j >= t - lengths[:, None]  # (B, T): the second copy of each row
        tokens = tokens.gather(1, torch.where(second, j - lengths[:, None], j))
    return (tokens, lengths) if return_lengths else tokens


def copy_batch(batch_size: int, length: int, vocab_size: int, generator: torch.Generator | None = None) -> Tensor:
    """A random sequence, a separator (id ``vocab_size``), the same sequence again: (B, 2 * length + 1)."""
    for name, value in (("batch_size", batch_size), ("length", length), ("vocab_size", vocab_size)):
        require_positive_int(name, value)
    seq = torch.randint(vocab_size, (batch_size, length), generator=generator)
    sep = torch.full((batch_size, 1), vocab_size)
    return torch.cat((seq, sep, seq), dim=1)


DIGIT_BOS = 10  # start-of-target token for the digit tasks; digits are ids 0..9, vocab_size 11


def digit_task_batch(
    task: str, batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """A toy transduction task on digit strings for encoder-decoder models.

    task: "reverse" | "sort" | "copy". Returns source (B, L), decoder input (B, L) =
    [BOS, y_0, ..., y_{L-2}] (teacher forcing) and target (B, L) = y. batch_size, length >= 1.
    """
    require_positive_int("batch_size", batch_size)
    require_positive_int("length", length)
    source = torch.randint(10, (batch_size, length), generator=generator)
    if task == "reverse":
        target = source.flip(1)
    elif task == "sort":
        target = source.sort(dim=1).values
    elif task == "copy":
        target = source.clone()
    else:
        raise ValueError(f"task must be 'reverse', 'sort' or 'copy', got {task!r}")
    decoder_input = torch.cat((torch.full((batch_size, 1), DIGIT_BOS), target[:, :-1]), dim=1)
    return source, decoder_input, target
