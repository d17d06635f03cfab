"""The training engine: one pack of cells, trained in one process as one batched computation.

A *pack* is a list of cells that differ only in learning rate and seed (see `grid.py`). Modules,
one job each: `options` (EngineOptions), `schedule`, `packing`, `members`, `sgd`, `checkpoint`,
`runtime`, `graphs` (whole-step CUDA graphs), `trainer` (PackTrainer, train_pack) and `job`
(one `skipinit train` job's whole life).

Design, in the order a step runs:

- **Data.** The trainer reads its batches from a data source, whose epoch is a function of
  (cell seed, epoch) alone, so a resumed run redraws the same batches without saved RNG state.
  The canonical 32 x 32 datasets (`skipinit.data.ondevice`) are copied to the device once, zero-padded by
  4 pixels; each epoch draws, from a `torch.Generator`, a permutation, crop offsets and flips for
  the whole training set, and a step crops, flips and gathers its batch with one advanced-indexing
  op and normalizes it: no per-sample Python, no worker processes. ImageNet, too large for the
  device, streams from its image folder (`skipinit.data.imagenet`): DataLoader workers
  decode, crop and flip uint8 batches, the device normalizes them.
- **Members.** Each member's model is built after `torch.manual_seed(cell seed)`, so its
  initialization equals the same cell trained alone. All parameters of all members live in one
  flat `[N, P]` buffer (one row per member), and the parameters the forward uses are views into it;
  so are the gradients, so autograd accumulates straight into the flat gradient buffer.
- **Forward.** One member (pack of one): the module itself, no packing machinery. Several members:
  *channel packing* (see `packing`): the members run side by side in the channel dimension,
  a conv becoming one grouped conv, a BN one BN over N*C channels (running statistics updated in
  place in the stacked buffers), the classifier a batched matmul, dropout applying masks that each
  member draws from a generator of its own (`dropout`), so a cell's numbers do not depend on its pack. This is what
  `torch.vmap` over `functional_call` computes, minus vmap's
  per-op batching rules (batch norm becomes an unfused normalize, multiply and add, forward and
  backward: vmap packing was 1.3x slower on CPU at 8 members, bench/RESULTS.md); every
  pack is checked against each member's own network at construction, and vmap (stacked
  parameters and BN buffers with `in_dims=0`, `randomness="different"`) remains the fallback for a
  model channel packing cannot express. Members that share a seed share the batch; otherwise every
  member gets its own augmented batch. The loss is the sum of the members' mean cross-entropies,
  so one backward gives each member exactly its own gradient.
- **Update.** SGD with momentum (optionally Nesterov) and L2 weight decay (added to the gradient of
  every parameter, BN scales and biases and SkipInit's alpha included) written as a handful of
  whole-buffer tensor ops on `[N, P]`, with the learning rate a per-member column, times a
  per-parameter row where the model asks for one (Fixup's scalars, `models.lr_multipliers`). A member whose
  loss is non-finite or above `divergence_loss` stops updating: `torch.where` keeps its parameters
  and momentum, and the first bad step is recorded on the device; nothing is read back per step.
- **CUDA graphs** (`cuda_graphs`, off by default). After 3 eager warm-up steps the whole step
  (forward, backward, divergence bookkeeping, SGD update) is captured once and replayed, the batch
  copied into static input buffers first; a failed capture logs one line and trains on eagerly,
  and on the CPU the option is ignored with one log line (`graphs`).
- **Epoch end.** One host sync reads the epoch's summed losses and accuracies; evaluation on the
  full test set (or the cell's class-balanced `test_subset`); one log line per member; an atomic
  checkpoint with an embedded sha256, from which a killed run resumes bit for bit.
"""
