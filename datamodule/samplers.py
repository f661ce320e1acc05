"""Length-bucketed batching under a frame budget (``--max-frames``)."""

from typing import Any, Iterator, List, Sequence

import torch


class BucketBatchSampler(torch.utils.data.Sampler):
    """Group utterances of similar length into batches of at most ``max_frames`` frames.

    Lengths are split into ``num_buckets`` equal-width buckets; within a bucket items are
    shuffled (``shuffle``) or sorted longest first; batches are filled greedily in bucket
    order and then, when shuffling, visited in a random order. Deterministic for a given
    ``seed`` and epoch (:meth:`set_epoch`).

    Resuming: :meth:`resume_at` makes iterations start at batch ``start`` of an epoch's
    batch list until the epoch changes (the batches an interrupted run had already trained
    on are left out; a DataLoader with workers calls ``iter()`` twice); ``len()`` stays the
    whole epoch, as Lightning counts.
    With ``keyed``, a batch is a list of ``(epoch, index)`` pairs, which the dataset uses to
    seed the item's augmentation.

    Args:
        lengths: Frames per utterance (25 Hz).
        max_frames: Frame budget per batch; an utterance longer than this is an error.
        num_buckets: Number of length buckets.
        shuffle: Shuffle within buckets and the batch order.
        seed: Base seed.
        source: Name used in error messages (the label file).
        rank, world_size: Distributed shard; each rank gets every ``world_size``-th batch.
            Every rank must get the same number of batches (DDP's collectives run once per
            batch on every rank), so when the count is not a multiple of ``world_size`` the
            largest batches are split in two until it is; only when no batch holds two
            utterances are batches left out, counted in :attr:`left_out`.
        keyed: Yield ``(epoch, index)`` pairs instead of indices.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        num_buckets: int = 50,
        shuffle: bool = True,
        seed: int = 0,
        source: str = "dataset",
        rank: int = 0,
        world_size: int = 1,
        keyed: bool = False,
    ) -> None:
        if max_frames <= 0:
            raise ValueError(f"--max-frames must be positive, got {max_frames}")
        if num_buckets <= 0:
            raise ValueError(f"--train-num-buckets must be positive, got {num_buckets}")
        too_long = [(i, n) for i, n in enumerate(lengths) if n > max_frames]
        if too_long:
            i, n = too_long[0]
            raise ValueError(
                f"{source}: utterance {i} has {n} frames, more than --max-frames {max_frames} "
                f"({len(too_long)} utterance(s) too long); raise --max-frames or filter the list"
            )
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.max_frames = max_frames
        self.num_buckets = num_buckets
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size
        self.keyed = keyed
        self.start = 0
        self.left_out = 0
        self._batches = self._make_batches()

    def set_epoch(self, epoch: int) -> None:
        """Batches of ``epoch`` from the first one (nothing changes when the sampler is at
        that epoch already, e.g. resumed into its middle)."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self.start = 0
        self._batches = self._make_batches()

    def resume_at(self, epoch: int, start: int) -> None:
        """Make the next iteration begin at batch ``start`` of ``epoch``'s batches."""
        self.set_epoch(epoch)
        if not 0 <= start <= len(self._batches):
            raise ValueError(f"cannot resume at batch {start} of an epoch of {len(self._batches)} batches; "
                             f"the label list or --max-frames changed since the checkpoint was written")
        self.start = start

    def _make_batches(self) -> List[List[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        lo, hi = int(self.lengths.min()), int(self.lengths.max())
        edges = torch.linspace(lo, hi, self.num_buckets)
        bucket = torch.bucketize(self.lengths.float(), edges)
        if self.shuffle:
            order = torch.randperm(len(self.lengths), generator=gen)
        else:
            order = torch.argsort(self.lengths, descending=True, stable=True)
        order = order[torch.argsort(bucket[order], stable=True)]
        batches, current, frames = [], [], 0
        for idx in order.tolist():
            n = int(self.lengths[idx])
            if current and frames + n > self.max_frames:
                batches.append(current)
                current, frames = [], 0
            current.append(idx)
            frames += n
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        if self.world_size > 1:
            batches = self._even_out(batches)
            batches = batches[self.rank :: self.world_size]
        return batches

    def _even_out(self, batches: List[List[int]]) -> List[List[int]]:
        """``batches`` made a multiple of ``world_size`` long: split the batch of most
        utterances (the first such) in two halves, in place, as often as needed; leave out
        the last batches only when none has two utterances (:attr:`left_out`)."""
        batches = list(batches)
        while len(batches) % self.world_size:
            i = max(range(len(batches)), key=lambda j: len(batches[j]))
            if len(batches[i]) < 2:
                break
            half = len(batches[i]) // 2
            batches[i:i + 1] = [batches[i][:half], batches[i][half:]]
        self.left_out = len(batches) % self.world_size
        return batches[: len(batches) - self.left_out]

    def __iter__(self) -> Iterator[List[Any]]:
        batches = self._batches[self.start:]  # the resume position holds until the next epoch
        if self.keyed:
            batches = [[(self.epoch, i) for i in batch] for batch in batches]
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches)
