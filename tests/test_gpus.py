"""GPU slot claiming (src/skipinit/gpus.py), without GPUs: the GPU count and lock folder are injected."""

import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from skipinit import gpus

from conftest import REPO

# A claimer in its own process: claims, prints its slot, holds it until stdin closes.
CLAIMER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {src!r})
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    from skipinit import gpus
    claim = gpus.claim_gpu("auto", gpu_count={count}, lock_dir={lock_dir!r}, timeout={timeout})
    print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    sys.stdin.read()
    """
)


def start_claimer(lock_dir, count, timeout=30):
    code = CLAIMER.format(src=str(REPO / "src"), count=count, lock_dir=str(lock_dir), timeout=timeout)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def slot_of(process):
    line = process.stdout.readline().strip()
    assert line, process.stderr.read()
    return line


def stop(process):
    process.stdin.close()
    process.wait(timeout=30)


def test_concurrent_processes_get_distinct_gpus(tmp_path):
    count = 4
    claimers = [start_claimer(tmp_path, count) for _ in range(count)]
    try:
        slots = [slot_of(process) for process in claimers]
        assert sorted(slots) == [str(index) for index in range(count)]
    finally:
        for process in claimers:
            stop(process)


def test_released_slot_is_reused(tmp_path):
    claimers = [start_claimer(tmp_path, 3) for _ in range(3)]
    try:
        slots = [slot_of(process) for process in claimers]
        freed = slots[1]
        stop(claimers[1])  # the process exits: the kernel drops its lock
        late = start_claimer(tmp_path, 3)
        claimers[1] = late
        assert slot_of(late) == freed
    finally:
        for process in claimers:
            if process.poll() is None:
                stop(process)


def test_concurrent_threads_get_distinct_gpus(tmp_path):
    count = 6
    barrier = threading.Barrier(count)
    environs = [{} for _ in range(count)]
    claims = [None] * count

    def claim(index):
        barrier.wait()
        claims[index] = gpus.claim_gpu("cuda", gpu_count=count, lock_dir=tmp_path, environ=environs[index], timeout=10)

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in environs) == [str(index) for index in range(count)]
        assert all(claim.claimed for claim in claims)
    finally:
        for claim in claims:
            claim.release()


def test_waits_for_a_slot_and_times_out(tmp_path):
    held = [gpus.claim_gpu(gpu_count=2, lock_dir=tmp_path, environ={}) for _ in range(2)]
    try:
        with pytest.raises(TimeoutError):
            gpus.claim_gpu(gpu_count=2, lock_dir=tmp_path, environ={}, timeout=0.3, poll=0.05)
        held[0].release()
        environ = {}
        again = gpus.claim_gpu(gpu_count=2, lock_dir=tmp_path, environ=environ, timeout=5, poll=0.05)
        assert environ["CUDA_VISIBLE_DEVICES"] == held[0].device
        again.release()
    finally:
        for claim in held:
            claim.release()


@pytest.mark.parametrize("preset", ["3", "GPU-8a1b2c3d-0000-1111-2222-333344445555", "", "-1"])
def test_preset_single_device_is_respected(tmp_path, preset):
    environ = {"CUDA_VISIBLE_DEVICES": preset}
    claim = gpus.claim_gpu(gpu_count=8, lock_dir=tmp_path, environ=environ)
    assert environ == {"CUDA_VISIBLE_DEVICES": preset}
    assert not claim.claimed
    assert not any(tmp_path.iterdir())  # not even a lock folder


def test_preset_device_list_is_the_pool(tmp_path):
    """A grouped SLURM job with several GPUs: each process takes one of the job's GPUs."""
    environs = [{"CUDA_VISIBLE_DEVICES": "4,6", "SLURM_JOB_ID": "77"} for _ in range(2)]
    claims = [
        gpus.claim_gpu(gpu_count=lambda: pytest.fail("must not count GPUs"), lock_dir=tmp_path, environ=env)
        for env in environs
    ]
    try:
        assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in environs) == ["4", "6"]
        assert {claim.lock_path.parent.name for claim in claims} == {"slurm-77"}  # slots per SLURM job
    finally:
        for claim in claims:
            claim.release()


@pytest.mark.parametrize("device, count", [("cpu", 4), ("cuda:1", 4), ("auto", 1), ("auto", 0), ("cuda", 0)])
def test_no_op_on_cpu_single_gpu_or_explicit_device(tmp_path, device, count):
    environ = {}
    claim = gpus.claim_gpu(device, gpu_count=count, lock_dir=tmp_path, environ=environ)
    assert environ == {} and not claim.claimed and claim.device is None


def test_lock_dir_defaults_to_this_users_folder_in_tmpdir(tmp_path):
    assert gpus.default_lock_dir({"TMPDIR": str(tmp_path)}) == tmp_path / f"skipinit-gpu-locks-{os.geteuid()}"
    assert gpus.default_lock_dir({"TMPDIR": "/x", gpus.LOCK_DIR_ENV: str(tmp_path)}) == tmp_path
    claim = gpus.claim_gpu(gpu_count=2, lock_dir=gpus.default_lock_dir({"TMPDIR": str(tmp_path)}), environ={})
    try:
        folder = claim.lock_path.parent.parent
        assert claim.claimed and stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()
    finally:
        claim.release()


def test_a_planted_symlink_clobbers_nothing(tmp_path):
    """Another local user plants the lock file as a link to a file of ours: it is neither followed nor written."""
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (tmp_path / "locks" / "local").mkdir(parents=True, mode=0o700)
    (tmp_path / "locks").chmod(0o700)
    (tmp_path / "locks" / "local" / "0.lock").symlink_to(victim)
    environ = {}
    claim = gpus.claim_gpu(gpu_count=2, lock_dir=tmp_path / "locks", environ=environ)
    assert victim.read_text() == "keep me\n" and not claim.claimed and environ == {}
    assert (tmp_path / "locks" / "local" / "0.lock").is_symlink()


@pytest.mark.parametrize("plant", ["symlink", "others_can_write", "another_owner"])
def test_a_lock_folder_others_control_is_not_used(tmp_path, plant):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder = tmp_path / "locks"
    if plant == "symlink":
        folder.symlink_to(elsewhere)
    else:
        folder.mkdir(mode=0o700)
        if plant == "others_can_write":
            folder.chmod(0o777)
        elif os.geteuid() == 0:
            os.chown(folder, 12345, 12345)
        else:
            pytest.skip("giving a folder to another user needs root")
    environ = {}
    claim = gpus.claim_gpu(gpu_count=2, lock_dir=folder, environ=environ)
    assert not claim.claimed and environ == {} and "no lock folder" in claim.reason
    assert not any(elsewhere.iterdir())


def test_count_gpus_without_a_gpu_is_zero():
    """On this CPU-only machine (and in CI): no nvidia-smi, no driver, no CUDA initialization."""
    import shutil
    from pathlib import Path

    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia/gpus").is_dir():
        pytest.skip("a GPU driver is present")
    assert gpus.count_gpus() == 0
