"""QLoRA for the large pretrained components of a model (``--use-qlora``).

Applied once, as the last step of building an :class:`E2E` (after every component and
the Conformer exist). A component takes part when it exposes the pretrained network it
wraps through ``pretrained_model()`` (the Hugging Face frontends ``vit``, ``vivit``,
``clip-vit``, ``whisper``, ``wavlm`` and the decoders ``llama``, ``whisper-decoder``; a
new pretrained component gets QLoRA by defining that method). For each such network:

1. a SHA-256 fingerprint of its pretrained weights is taken (stored in the checkpoint, so
   evaluation can tell when ``--*-model-name`` points at different weights);
2. every ``nn.Linear`` except the output head (``lm_head`` / ``proj_out``) and the layers
   the component lists in ``qlora_keep_full_precision`` (weights the model reads without
   calling the layer, e.g. WavLM's attention) becomes a bitsandbytes 4-bit NF4 layer with
   double quantisation, computing in fp32 or bf16;
3. peft LoRA adapters (rank ``r``, scaling ``alpha / r``, dropout) are added to the
   layers named by ``--qlora-target-modules`` (default: the component's
   ``qlora_default_targets``, else the attention projections,
   :data:`ATTENTION_PROJECTIONS`); everything else in the pretrained
   network (4-bit weights, embeddings, norms) is frozen.

Newly initialised parts (projection, fusion, Conformer, CTC, a Transformer decoder, the
LLM input projection) stay full precision and trainable. Checkpoints hold only what
cannot be rebuilt from ``--*-model-name``: :func:`checkpoint_state_dict`.
"""

import hashlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.lora.quantize import (
    import_bitsandbytes,
    import_peft,
    is_quantized_linear,
    logical_numel,
    quantize_linears,
)

# Default LoRA targets: the attention projections, whatever the family calls them
# (LLaMA q/k/v/o_proj; Whisper, WavLM, CLIP q/k/v_proj + out_proj; ViT and ViViT
# query/key/value in older transformers, q/k/v/o_proj in 5.x; Phi-3 qkv_proj).
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "qkv_proj", "query", "key", "value")
FINGERPRINT_BUFFER = "qlora_base_sha256"
ADAPTER_MARK = "lora_"


def pretrained_components(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Module, torch.nn.Module]]:
    """``(component name, component, its pretrained network)`` for every component of
    ``model`` that wraps a pretrained network (outermost first, none nested in another)."""
    found: List[Tuple[str, torch.nn.Module, torch.nn.Module]] = []
    for name, module in model.named_modules():
        getter = getattr(module, "pretrained_model", None)
        if not callable(getter) or any(name.startswith(n + ".") for n, _, _ in found):
            continue
        try:
            inner = getter()
        except NotImplementedError:
            continue
        if isinstance(inner, torch.nn.Module):
            found.append((name, module, inner))
    return found


def fingerprint(networks: Sequence[torch.nn.Module]) -> torch.Tensor:
    """SHA-256 over names, dtypes, shapes and bytes of the networks' weights: ``(32,)`` uint8."""
    digest = hashlib.sha256()
    for network in networks:
        for key, value in sorted(network.state_dict().items()):
            t = value.detach().cpu().contiguous()
            digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            if t.numel():
                digest.update(t.reshape(-1).view(torch.uint8).numpy())  # buffer protocol: no copy
    return torch.tensor(list(digest.digest()), dtype=torch.uint8)


def _linear_leaf_names(network: torch.nn.Module) -> List[str]:
    names = set()
    for name, module in network.named_modules():
        if name and (type(module) is torch.nn.Linear or is_quantized_linear(module)):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


class QLoRAManager:
    """Quantise + adapt the pretrained components of a model.

    Args:
        args: Any object with the ``qlora_*`` attributes of :class:`ModelConfig`
            (``qlora_r``, ``qlora_alpha``, ``qlora_dropout``, ``qlora_target_modules``,
            ``qlora_compute_dtype``) -- a ``ModelConfig`` or the parsed CLI flags.
    """

    def __init__(self, args) -> None:
        self.r = int(getattr(args, "qlora_r", 16))
        self.alpha = float(getattr(args, "qlora_alpha", 32))
        self.dropout = float(getattr(args, "qlora_dropout", 0.05))
        targets = getattr(args, "qlora_target_modules", None)
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        self.target_modules: Optional[List[str]] = list(targets) if targets else None
        dtype = str(getattr(args, "qlora_compute_dtype", "float32"))
        self.compute_dtype = torch.bfloat16 if dtype in ("bfloat16", "bf16") else torch.float32

    @staticmethod
    def default_targets(network: torch.nn.Module, component: str) -> List[str]:
        """The attention projections present in ``network`` (:data:`ATTENTION_PROJECTIONS`)."""
        present = [n for n in _linear_leaf_names(network) if n in ATTENTION_PROJECTIONS]
        if not present:
            raise ValueError(
                f"--use-qlora: found no attention projections in {component} ({type(network).__name__}) to put "
                f"LoRA adapters on; name them with --qlora-target-modules, e.g. some of: "
                f"{', '.join(_linear_leaf_names(network))}"
            )
        return present

    def apply_qlora(self, model: torch.nn.Module, target_modules: Optional[Sequence[str]] = None) -> torch.nn.Module:
        """Quantise and adapt every pretrained component of ``model`` in place.

        ``target_modules`` (else ``--qlora-target-modules``, else the family default)
        names the linear layers that get adapters, matched on the last name component(s).
        Raises ``ValueError`` when the model has no pretrained component or a target
        list matches nothing in a component.
        """
        import_bitsandbytes()  # the install hint, before any work
        peft = import_peft()
        components = pretrained_components(model)
        if not components:
            config = getattr(model, "config", None)
            parts = (f" ({', '.join(p for p in (getattr(config, 'vision_encoder', None), getattr(config, 'audio_encoder', None), getattr(config, 'decoder', None)) if p)})"
                     if config is not None else "")
            raise ValueError(
                f"--use-qlora: the model has only small components trained from scratch{parts}, nothing to "
                "quantise; QLoRA applies to pretrained ones: --vision-encoder vit|vivit|clip-vit, "
                "--audio-encoder whisper|wavlm, --decoder llama|whisper-decoder"
            )
        if getattr(model, "qlora_applied", False):
            raise ValueError("QLoRA was already applied to this model")
        targets = list(target_modules) if target_modules else self.target_modules
        model.register_buffer(FINGERPRINT_BUFFER, fingerprint([net for _, _, net in components]))
        for name, component, network in components:
            keep_names = tuple(getattr(component, "qlora_keep_full_precision", ()) or ())
            component_default = getattr(component, "qlora_default_targets", None)
            wanted = targets or (list(component_default) if component_default else self.default_targets(network, name))
            blocked = [t for t in wanted if t in keep_names]
            if blocked:
                raise ValueError(
                    f"--qlora-target-modules {','.join(blocked)}: {name} ({type(network).__name__}) reads these "
                    f"layers' weights directly, so they stay full precision and cannot take adapters; "
                    f"its default targets are {','.join(component_default or ())}"
                )
            keep = [m for n, m in network.named_modules() if n and _matches(n, keep_names)]
            head = network.get_output_embeddings() if hasattr(network, "get_output_embeddings") else None
            if isinstance(head, torch.nn.Module):
                keep.append(head)
            names = [n for n, m in network.named_modules() if type(m) is torch.nn.Linear and m not in keep]
            if not any(_matches(n, wanted) for n in names):
                raise ValueError(
                    f"--qlora-target-modules {','.join(wanted)} matches no linear layer of {name} "
                    f"({type(network).__name__}); its layers are named: {', '.join(_linear_leaf_names(network))}"
                )
            quantize_linears(network, self.compute_dtype, keep=keep)
            lora = peft.LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                                   target_modules=list(wanted), bias="none")
            peft.inject_adapter_in_model(lora, network)
            adapters = [p for n, p in network.named_parameters() if ADAPTER_MARK in n]
            for p in network.parameters():
                p.requires_grad_(False)
            for p in adapters:
                p.requires_grad_(True)
            if not adapters:
                raise RuntimeError(f"{name}: peft added no LoRA adapters")
            hook = getattr(component, "on_qlora_applied", None)
            if callable(hook):
                hook()
        model.qlora_applied = True
        return model

    @staticmethod
    def get_trainable_params(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Parameter]]:
        """``(name, parameter)`` of everything the optimiser updates."""
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def frozen_prefixes(model: torch.nn.Module) -> List[str]:
    """State-dict prefixes of the pretrained networks (rebuilt from ``--*-model-name``)."""
    prefixes = []
    for name, component, network in pretrained_components(model):
        for sub, module in component.named_modules():
            if module is network:
                prefixes.append(".".join(p for p in (name, sub) if p) + ".")
                break
    return prefixes


def checkpoint_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """What a QLoRA model's checkpoint holds: the state dict minus the pretrained
    networks' own weights (4-bit or frozen), i.e. the LoRA adapters, every newly
    initialised module (parameters and buffers) and the base-weight fingerprint."""
    state = model.state_dict()
    if not getattr(model, "qlora_applied", False):
        return state
    prefixes = frozen_prefixes(model)
    return {k: v for k, v in state.items()
            if not (k.startswith(tuple(prefixes)) and ADAPTER_MARK not in k)}


def check_fingerprint(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Error when ``state`` was trained on other pretrained weights than ``model`` holds."""
    mine = getattr(model, FINGERPRINT_BUFFER, None)
    theirs = state.get(FINGERPRINT_BUFFER)
    if mine is None or theirs is None:
        return
    if not torch.equal(mine.cpu(), theirs.cpu()):
        config = getattr(model, "config", None)
        names = ", ".join(f"{key.replace('_', ' ')} model {name}"
                          for key, name in (config.model_names().items() if config is not None else ()))
        raise ValueError(
            f"{source}: its LoRA adapters were trained on other pretrained weights than the ones loaded now "
            f"({names or 'default model names'}); point the model-name flags at the models used in training"
        )


def tensor_bytes(tensors: Iterable[torch.Tensor], seen: Optional[set] = None) -> int:
    """Bytes held by ``tensors`` (each storage once, via ``seen``), plus the block
    scales of 4-bit weights (their quantisation state)."""
    seen = set() if seen is None else seen
    total = 0
    for t in tensors:
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
        state = getattr(t, "quant_state", None)
        if state is not None:
            total += sum(x.numel() * x.element_size() for x in _quant_state_tensors(state))
    return total


def module_bytes(module: torch.nn.Module, seen: Optional[set] = None) -> int:
    """Memory of a module's parameters and buffers (shared tensors counted once)."""
    return tensor_bytes(list(module.parameters()) + list(module.buffers()), seen)


def parameter_table(model: torch.nn.Module) -> str:
    """Per top-level component: parameters (4-bit weights counted as the weights they
    stand for), trainable parameters, and memory (bytes actually held by parameters,
    buffers and quantisation state); plus a total line."""
    rows = []
    seen: set = set()
    quantized = bool(getattr(model, "qlora_applied", False))
    for name, child in model.named_children():
        params = list(child.parameters())
        total = sum(logical_numel(p) for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        n4 = sum(1 for m in child.modules() if is_quantized_linear(m)) if quantized else 0
        rows.append((name, total, trainable, module_bytes(child, seen), n4))
    own = tensor_bytes(model.buffers(recurse=False), seen)
    width = max(len(r[0]) for r in rows + [("total", 0, 0, 0, 0)])
    lines = [f"{'component':<{width}}  {'params':>12}  {'trainable':>12}  {'trainable %':>11}  {'memory MB':>10}  4-bit layers"]
    for name, total, trainable, mem, n4 in rows:
        lines.append(f"{name:<{width}}  {total:>12,}  {trainable:>12,}  {100.0 * trainable / max(total, 1):>10.2f}%  "
                     f"{mem / 2**20:>10.2f}  {n4}")
    total = sum(r[1] for r in rows)
    trainable = sum(r[2] for r in rows)
    mem = sum(r[3] for r in rows) + own
    lines.append(f"{'total':<{width}}  {total:>12,}  {trainable:>12,}  {100.0 * trainable / max(total, 1):>10.2f}%  "
                 f"{mem / 2**20:>10.2f}  {sum(r[4] for r in rows)}")
    return "\n".join(lines)


def _quant_state_tensors(state) -> Iterable[torch.Tensor]:
    for attr in ("absmax", "code"):
        t = getattr(state, attr, None)
        if isinstance(t, torch.Tensor):
            yield t
    nested = getattr(state, "state2", None)
    if nested is not None:
        yield from _quant_state_tensors(nested)
