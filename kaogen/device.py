"""Devices, mixed precision and random states, shared by every command.

    resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps")   -> torch.device (checked: present, N < count)
    autocast(device, enabled)                                     bfloat16 autocast on *any* device type
    rng_state(generators, device) / restore_rng(state, ...)       RNG states as CPU byte tensors

Mixed precision is bfloat16 autocast, on CUDA and on the CPU alike, so that the test suite (which
has no GPU) runs exactly the code a GPU runs. Parts that must stay float32 (latent averages,
augmentation grids, losses, regularisers, strokes fed to the rasterisers) leave autocast with
`float32_region()` and cast their inputs with `.float()`.

Random states are always saved and restored as CPU `torch.ByteTensor`s (what `torch.set_rng_state`
and `Generator.set_state` accept); a state loaded from a checkpoint must therefore be loaded to the
CPU (`kaogen.checkpoint.load_checkpoint` always does) and only then its tensors moved to the device.
"""

from __future__ import annotations

from kaogen.errors import KaogenError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """Return a `torch.device` for `name`; `auto` picks CUDA, then MPS, then CPU.

    Asking for a device that is not present is an error, not a silent fall-back; so is `cuda:N`
    with N at or above the number of visible GPUs.
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").lower().strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base, _, index = name.partition(":")
    if base not in DEVICE_CHOICES or base == "auto" or (index and not index.isdigit()) or (index and base != "cuda"):
        raise KaogenError(f"unknown device {name!r}: use one of auto, cpu, cuda, cuda:N, mps")
    if base == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise KaogenError(f"--device {name} asked for, but torch sees no CUDA GPU on this machine")
        if index and int(index) >= count:
            raise KaogenError(f"--device {name} asked for, but this machine has {count} CUDA GPU(s) "
                              f"(cuda:0 .. cuda:{count - 1})")
        return torch.device("cuda", int(index) if index else torch.cuda.current_device())
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise KaogenError("--device mps asked for, but MPS is not available on this machine")
    return torch.device(base)


def autocast(device, enabled: bool = True):
    """bfloat16 autocast for `device` (CUDA, CPU or MPS): the same mixed-precision path everywhere."""
    import torch

    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(enabled))


def float32_region(device):
    """Leave autocast inside an autocast region (inputs must be cast with `.float()` by the caller)."""
    import torch

    return torch.autocast(torch.device(device).type, enabled=False)


def rng_state(generators: dict | None = None, device=None) -> dict:
    """The process's random state as CPU byte tensors: torch's global CPU generator, the CUDA
    generator of `device` (when it is a CUDA device), and each named `torch.Generator` in `generators`."""
    import torch

    state = {"torch": torch.get_rng_state()}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).cpu()
    for name, g in (generators or {}).items():
        state[f"gen.{name}"] = g.get_state().cpu()
    return state


def restore_rng(state: dict, generators: dict | None = None, device=None) -> None:
    """Restore what `rng_state` saved. States are moved to the CPU first (a checkpoint loaded with
    map_location="cuda" would otherwise be refused: "RNG state must be a torch.ByteTensor").

    A run saved on a CPU and resumed on CUDA (or the reverse) restores the CPU and generator states;
    the CUDA generator is seeded from the CPU state then, since none was saved."""
    import torch

    def byte(t):
        return t.detach().to("cpu", torch.uint8)

    torch.set_rng_state(byte(state["torch"]))
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        if "cuda" in state:
            torch.cuda.set_rng_state(byte(state["cuda"]), device)
        else:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(int(torch.randint(2 ** 62, (), generator=None)))
    for name, g in (generators or {}).items():
        key = f"gen.{name}"
        if key not in state:
            raise KaogenError(f"the saved state has no random state for {name!r}: it belongs to another kind of run")
        g.set_state(byte(state[key]))               # CPU and CUDA generators both take a CPU ByteTensor

