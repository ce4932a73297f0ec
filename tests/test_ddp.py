"""DistributedDataParallel with 2 CPU processes (gloo) on tiny synthetic data: each
rank trains on its own shard, weights stay identical across ranks after every
step, and only rank 0 writes the record and the checkpoints."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from synthetic import synthetic_data, tiny_overrides

import kps.checkpoints as ck
import kps.train as kt
from kps.configs import make_config
from kps.results import config_record_path, load_record

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather(obj):
    out = [None] * WORLD
    dist.all_gather_object(out, obj)
    return out


def _flat_weights(model: torch.nn.Module) -> torch.Tensor:
    """All parameters (BN running statistics are per rank until DDP broadcasts rank 0's
    at the next forward and the trainer does before evaluating)."""
    return torch.cat([p.detach().flatten().double() for p in model.parameters()])


def _worker(rank: int, port: int, root: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ctx, device = kt.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, dist.get_backend()) == (rank, WORLD, "gloo")
    data = synthetic_data()
    config = make_config("cifar10", "kps_ga", **tiny_overrides(ga_switch_epoch=1))
    trainer = kt.Trainer(config, data, device)
    assert isinstance(trainer.train_net, torch.nn.parallel.DistributedDataParallel)

    # each rank gets its own half of one common permutation
    indices = trainer.epoch_indices()
    shards = _gather(indices.tolist())
    n = len(data.train.targets)
    assert len(shards[0]) == len(shards[1]) == n // WORLD
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(n))

    # weights identical on both ranks after every step (per-rank batch 16 / 2 = 8 -> one step each)
    per_rank = config.batch_size // WORLD
    start = _flat_weights(trainer.model)
    for step in range(3):
        trainer.train_epoch(0, indices[step * per_rank:(step + 1) * per_rank])
        w = _gather(_flat_weights(trainer.model))
        assert torch.equal(w[0], w[1]), f"weights differ across ranks after step {step}"
    assert not torch.equal(start, w[0])  # and they did train
    trainer.evaluate()
    buffers = _gather(torch.cat([b.flatten().double() for b in trainer.model.buffers()]))
    assert torch.equal(buffers[0], buffers[1]), "BN statistics differ at evaluation"

    # a whole run through train(): only rank 0 writes (each rank is given its own folders)
    out, ckpt = os.path.join(root, f"rank{rank}", "results"), os.path.join(root, f"rank{rank}", "ckpt")
    record = kt.train(config, out=out, checkpoint_dir=ckpt, device="cpu", data=data, quiet=True)
    assert record["world_size"] == WORLD
    assert _gather(record["top1_error"])[0] == _gather(record["top1_error"])[1]
    dist.destroy_process_group()


def test_ddp_two_cpu_processes(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    config = make_config("cifar10", "kps_ga", **tiny_overrides(ga_switch_epoch=1))
    assert not (tmp_path / "rank1").exists(), "rank 1 wrote files"
    record = load_record(config_record_path(tmp_path / "rank0/results", config))
    assert record["world_size"] == WORLD and len(record["history"]) == config.epochs
    state = torch.load(ck.checkpoint_path(tmp_path / "rank0/ckpt", config), weights_only=False)
    assert state["world_size"] == WORLD and len(state["rng"]) == WORLD and state["next_epoch"] == config.epochs
    # the ranks augment differently: their saved augmentation generator states differ
    assert not torch.equal(state["rng"][0]["aug"], state["rng"][1]["aug"])
