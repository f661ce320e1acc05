"""Options a component declares next to its class (ESPnet2's ``--encoder_conf`` with
typed, documented fields, as in Hugging Face configs).

A component class lists its options in ``options: Tuple[Option, ...]`` (a subclass adds to
its base's tuple). The registries collect them, ``train.py``/``eval.py`` build their flags
from them, and a model config stores, per chosen component, the values of its own options
(``vision_encoder_conf`` ...). So an option of a component that is not chosen cannot be set,
and adding an encoder with an option of its own touches no shared file but the registry.

Example::

    class MyEncoder(BaseFrontend):
        options = (Option("width", 16, "Channels of the first convolution.", flag="--my-width"),)

        def __init__(self, width: int = 16) -> None: ...

gives ``--my-width`` (int, default 16), stored as ``vision_encoder_conf = {"width": 16}``
and passed to ``MyEncoder.from_config(config, {"width": ...})``.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Option:
    """One option of a component.

    Attributes:
        name: Key in the component's conf dict and keyword of its constructor.
        default: Value when not given.
        help: One line for ``--help``.
        type: ``int``, ``float``, ``str`` or ``bool`` (default: the type of ``default``;
            required when the default is ``None``). A ``bool`` option is a switch flag that
            sets ``True``.
        choices: Allowed values, or ``None``.
        minimum: Smallest allowed value of a number, or ``None``.
        greater_than: A number must be larger than this (an open lower bound), or ``None``.
        maximum: Largest allowed value of a number, or ``None``. A float option with a bound
            refuses NaN and infinities.
        flag: Command-line flag; ``{family}`` stands for the family word (``vision`` /
            ``audio`` / ``encoder`` / ``decoder`` / ``fusion``). Default ``--<component
            name>-<name>``. Components may share a flag (``--resnet-width`` for both ResNets,
            ``--eunits`` for the encoders and the bottleneck fusion): one flag then sets the
            option of every chosen component that has it.
        aliases: Extra flags that set a constant, e.g. ``(("--whisper-pad-30s", 30.0),)``.
        replaceable: A flag value may differ from a checkpoint's stored value (e.g. the
            directory of a pretrained model that moved); otherwise that is an error.
    """

    name: str
    default: Any
    help: str
    type: Optional[type] = None
    choices: Optional[Tuple[Any, ...]] = None
    minimum: Optional[float] = None
    greater_than: Optional[float] = None
    maximum: Optional[float] = None
    flag: Optional[str] = None
    aliases: Tuple[Tuple[str, Any], ...] = ()
    replaceable: bool = False

    def __post_init__(self) -> None:
        if self.type is None:
            if self.default is None:
                raise ValueError(f"option {self.name!r}: give a type when the default is None")
            object.__setattr__(self, "type", type(self.default))
        if self.type not in (int, float, str, bool):
            raise ValueError(f"option {self.name!r}: type must be int, float, str or bool, got {self.type}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def flag_for(self, component: str, family: str) -> str:
        return (self.flag or f"--{component}-{self.name}").replace("{family}", family).replace("_", "-")

    def check(self, value: Any, where: str) -> Any:
        """``value`` converted to the option's type and checked against its choices."""
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"{where}: {self.name} may not be None")
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ValueError(f"{where}: {self.name} must be {self.type.__name__}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{where}: {self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        bounded = (self.minimum, self.greater_than, self.maximum) != (None, None, None)
        if self.type is float and bounded and not math.isfinite(value):
            raise ValueError(f"{where}: {self.name} must be a finite number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{where}: {self.name} must be >= {self.minimum:g}, got {value!r}")
        if self.greater_than is not None and value <= self.greater_than:
            raise ValueError(f"{where}: {self.name} must be > {self.greater_than:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{where}: {self.name} must be <= {self.maximum:g}, got {value!r}")
        return value


def find(options: Sequence[Option], name: str) -> Optional[Option]:
    return next((o for o in options if o.name == name), None)


def resolve_options(options: Sequence[Option], values: Optional[Mapping[str, Any]], where: str) -> Dict[str, Any]:
    """Every option of a component with its value: ``values`` checked (unknown keys are an
    error naming the known ones), the rest from the defaults."""
    values = dict(values or {})
    known = [o.name for o in options]
    unknown = sorted(set(values) - set(known))
    if unknown:
        have = ", ".join(known) if known else "none"
        raise ValueError(f"{where} has no option {', '.join(unknown)} (its options: {have})")
    return {o.name: o.check(values[o.name], where) if o.name in values else o.default for o in options}


def merge(*groups: Iterable[Option]) -> Tuple[Option, ...]:
    """Options of a base class followed by a subclass's; a later option of the same name
    replaces the earlier one (e.g. another default)."""
    out: Dict[str, Option] = {}
    for group in groups:
        for option in group:
            out[option.name] = option
    return tuple(out.values())
