"""Caffe network definitions (prototxt) of a built ResNet, and a reader for the text format.

The writer walks the module, lego by lego, and emits the layers the seed tool wrote for it, in its
order and with its names, so a Caffe user or Netron reads the same network. Two departures, both so
the prototxt describes the torch module exactly: convolutions say ``bias_term: false`` (the module's
convolutions have none; the seed's had unused biases that its counting ignored too), and the final
average pool's kernel is the final map's side (7 at 224, as the seed wrote).

The reader is a few lines because protobuf's own text format needs Caffe's compiled ``caffe.proto``,
which no maintained package ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

from torch import nn

from .legos import ConvBN, ConvBNReLU, ShortcutBlock
from .resnet import ClassifierHead, FCStageHead, ResNet, final_map_size

Phase = Literal["train", "test"]


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value: written unquoted."""

    value: str


Value = Union[str, int, float, bool, Enum, "Message"]
Message = list[tuple[str, Value]]


# --- writing --------------------------------------------------------------------------------------


def _format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return '"' + "".join(_escape(character) for character in value) + '"'
    return str(value)


# Protobuf's text format takes C escapes in strings; a raw newline or other control character
# inside quotes is a syntax error for protobuf (and so for Caffe), so those are always escaped.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
              "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}
_ESCAPE_SEQUENCE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)


def _escape(character: str) -> str:
    if character in _ESCAPES:
        return _ESCAPES[character]
    if ord(character) < 0x20 or ord(character) == 0x7F:
        return f"\\{ord(character):03o}"
    return character  # printable ASCII, and UTF-8 beyond it, which protobuf reads as is


def format_message(message: Message, indent: int = 0) -> str:
    """Protobuf text format of a message given as ordered (field, value) pairs."""
    pad = "  " * indent
    lines = []
    for key, value in message:
        if isinstance(value, list):
            lines.append(f"{pad}{key} {{")
            lines.append(format_message(value, indent + 1))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key}: {_format_value(value)}")
    return "\n".join(line for line in lines if line)


def _hw_fields(prefix: str, value: tuple[int, int], square_name: str) -> Message:
    height, width = value
    if height == width:
        return [(square_name, height)]
    return [(f"{prefix}_h", height), (f"{prefix}_w", width)]


class _Writer:
    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.layers: list[Message] = []

    def layer(self, name: str, kind: str, bottoms: list[str], tops: list[str], *fields: tuple[str, Value]) -> str:
        message: Message = [("name", name), ("type", kind)]
        message += [("bottom", b) for b in bottoms] + [("top", t) for t in tops]
        self.layers.append(message + list(fields))
        return tops[0] if tops else ""

    def emit(self, module: nn.Module, bottom: str) -> str:
        """Emit the Caffe layers of one lego; return its top blob."""
        if isinstance(module, ConvBN):
            return self.conv_bn(module, bottom)
        if isinstance(module, ShortcutBlock):
            return self.shortcut_block(module, bottom)
        if isinstance(module, nn.Sequential):
            for child in module:
                bottom = self.emit(child, bottom)
            return bottom
        raise TypeError(f"no Caffe form for {type(module).__name__}; add one to netdefs/prototxt.py")

    def conv_bn(self, lego: ConvBN, bottom: str) -> str:
        conv = lego.conv
        top = f"conv_{lego.name}"
        conv_param: Message = [("num_output", conv.out_channels), ("bias_term", False)]
        conv_param += _hw_fields("pad", conv.padding, "pad")
        conv_param += _hw_fields("kernel", conv.kernel_size, "kernel_size")
        conv_param += _hw_fields("stride", conv.stride, "stride")
        conv_param.append(("weight_filler", [("type", "msra")]))
        self.layer(
            top,
            "Convolution",
            [bottom],
            [top],
            ("param", [("lr_mult", 1), ("decay_mult", 1)]),
            ("convolution_param", conv_param),
        )
        frozen = ("param", [("lr_mult", 0), ("decay_mult", 0)])
        # Caffe's BatchNorm holds statistics only (its blobs must not learn); Scale holds gamma/beta.
        self.layer(
            f"bn_{lego.name}",
            "BatchNorm",
            [top],
            [top],
            frozen,
            frozen,
            frozen,
            ("batch_norm_param", [("use_global_stats", self.phase == "test")]),
        )
        self.layer(f"scale_{lego.name}", "Scale", [top], [top], ("scale_param", [("bias_term", True)]))
        if isinstance(lego, ConvBNReLU):
            self.layer(f"relu_{lego.name}", "ReLU", [top], [top])
        return top

    def shortcut_block(self, block: ShortcutBlock, bottom: str) -> str:
        shortcut = bottom if block.shortcut is None else self.conv_bn(block.shortcut, bottom)
        main = self.emit(block.main, bottom)
        top = f"eltwise_{block.name}"
        self.layer(top, "Eltwise", [shortcut, main], [top])
        self.layer(f"relu_{block.name}", "ReLU", [top], [top])
        return top

    def pooling(self, name: str, bottom: str, pool: str, kernel: int, stride: int) -> str:
        pooling_param: Message = [("pool", Enum(pool)), ("kernel_size", kernel), ("stride", stride)]
        return self.layer(name, "Pooling", [bottom], [name], ("pooling_param", pooling_param))

    def head(self, head: nn.Module, bottom: str, pool_size: int) -> str:
        if isinstance(head, ClassifierHead):
            pool = self.pooling(head.pool.name, bottom, "AVE", pool_size, 1)
            fc = head.fc
            ip_param: Message = [
                ("num_output", fc.out_features),
                ("weight_filler", [("type", "msra")]),
                ("bias_filler", [("type", "constant")]),
            ]
            return self.layer(
                fc.name,
                "InnerProduct",
                [pool],
                [fc.name],
                ("param", [("lr_mult", 1), ("decay_mult", 1)]),
                ("param", [("lr_mult", 2), ("decay_mult", 0)]),
                ("inner_product_param", ip_param),
            )
        if isinstance(head, FCStageHead):
            top = self.conv_bn(head.conv_in, bottom)
            top = self.pooling(head.pool.name, top, "AVE", pool_size, 1)
            top = self.conv_bn(head.conv_mid, top)
            self.layer(head.drop.name, "Dropout", [top], [top], ("dropout_param", [("dropout_ratio", head.drop.p)]))
            return self.conv_bn(head.conv_out, top)
        raise TypeError(f"no Caffe form for head {type(head).__name__}; add one to netdefs/prototxt.py")


def to_prototxt(net: ResNet, phase: Phase, name: str) -> str:
    """The Caffe ``train`` or ``test`` network definition of ``net``.

    The test net uses the BatchNorm layers' stored statistics and adds an Accuracy layer.
    """
    if phase not in ("train", "test"):
        raise ValueError(f"phase must be 'train' or 'test'; got {phase!r}")
    size = net.input_size
    writer = _Writer(phase)
    writer.layer(
        "data",
        "MemoryData",
        [],
        ["data", "label"],
        ("transform_param", [("crop_size", size)]),
        ("memory_data_param", [("batch_size", 1), ("channels", 3), ("height", size), ("width", size)]),
    )
    top = writer.conv_bn(net.stem, "data")
    top = writer.pooling(net.pool1.name, top, "MAX", net.pool1.kernel_size, net.pool1.stride)
    top = writer.emit(net.blocks, top)
    logits = writer.head(net.head, top, final_map_size(size))
    writer.layer("loss", "SoftmaxWithLoss", [logits, "label"], ["loss"])
    if phase == "test":
        writer.layer("accuracy", "Accuracy", [logits, "label"], ["accuracy"])
    header = f"name: {_format_value(name)}\n# Replace the MemoryData layer with your data layer.\n"
    return header + "\n".join(format_message([("layer", layer)]) for layer in writer.layers) + "\n"


# --- reading --------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s+|#[^\n]*|(?P<tok>[{}:]|"(?:[^"\\]|\\.)*"|[^\s{}:"#]+)')
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ParsedMessage = dict[str, list["ParsedValue"]]
ParsedValue = Union[str, int, float, bool, ParsedMessage]


def _tokens(text: str) -> list[str]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"prototxt: unexpected character {text[position]!r} at offset {position}")
        if match.group("tok"):
            tokens.append(match.group("tok"))
        position = match.end()
    return tokens


def _unescape(quoted: str) -> str:
    """The string a quoted protobuf text token stands for (C escapes decoded, as UTF-8 bytes)."""
    out = bytearray()
    position = 0
    for match in _ESCAPE_SEQUENCE.finditer(quoted):
        out += quoted[position : match.start()].encode()
        octal, hexadecimal, single = match.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hexadecimal is not None:
            out.append(int(hexadecimal, 16))
        elif single in _UNESCAPES:
            out += _UNESCAPES[single]
        else:
            raise ValueError(f"prototxt: unknown escape \\{single} in a string")
        position = match.end()
    out += quoted[position:].encode()
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("prototxt: a string is not UTF-8 once its escapes are decoded") from None


def _scalar(token: str) -> ParsedValue:
    if token.startswith('"'):
        if any(ord(c) < 0x20 for c in token):
            raise ValueError("prototxt: a raw control character (newline, tab...) inside a string; protobuf needs it escaped")
        return _unescape(token[1:-1])
    if token in ("true", "false"):
        return token == "true"
    for number in (int, float):
        try:
            return number(token)
        except ValueError:
            pass
    return token  # an enum value


def parse_prototxt(text: str) -> ParsedMessage:
    """Parse protobuf text format into ``{field: [values...]}`` (every field as a list, since any may
    repeat); nested messages become dicts of the same form."""
    tokens = _tokens(text)
    position = 0

    def message(closing: bool) -> ParsedMessage:
        nonlocal position
        fields: ParsedMessage = {}
        while position < len(tokens):
            key = tokens[position]
            if key == "}":
                if not closing:
                    raise ValueError("prototxt: unbalanced '}'")
                position += 1
                return fields
            if not _FIELD_NAME.fullmatch(key):
                raise ValueError(f"prototxt: expected a field name, found {key!r}")
            position += 1
            if position < len(tokens) and tokens[position] == ":":
                position += 1
            if position >= len(tokens) or tokens[position] in ("}", ":"):
                raise ValueError(f"prototxt: field {key!r} has no value")
            if tokens[position] == "{":
                position += 1
                value: ParsedValue = message(closing=True)
            else:
                value = _scalar(tokens[position])
                position += 1
            fields.setdefault(key, []).append(value)
        if closing:
            raise ValueError("prototxt: missing '}' at end of input")
        return fields

    return message(closing=False)
