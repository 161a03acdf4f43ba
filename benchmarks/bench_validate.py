"""Benchmark flow validation (issue #2): is `check_text` under 1 s for 2,000 nodes, and linear?

A generator writes realistic, valid flows of an exact size: a business-hours check, nested
menus of 3-9 options with retries and an 'exhausted' path, policy-number inputs, switches,
dials to config numbers, queues, voicemail, bounded "back to the menu" gotos, and comments.
For each size the benchmark times `flowpbx.language.loader.check_text` and, interleaved with
it, a bare `yaml.load(text, Loader=yaml.CSafeLoader)` of the same text as a baseline. The
machines that run this are noisy, so the validate/parse ratio within one run matters more than
absolute times.
It then fits the growth (log time against log nodes) and times the whole `flowpbx validate`
command, interpreter start included.

Run it with `make bench` or `.venv/bin/python benchmarks/bench_validate.py`. It prints a
Markdown table and writes the same results to benchmarks/results/validate.json. It exits 0
whether or not the target is met, and 1 only when a generated flow is not valid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import itertools
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from flowpbx.language.loader import check_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "validate.json"
SIZES = (100, 250, 500, 1000, 2000)
TARGET_NODES = 2000
TARGET_MS = 1000.0
LINEAR_EXPONENT = 1.2
"""Fitted growth exponents up to this count as 'roughly linear'."""
MIN_RUNS = 7
MAX_RUNS = 200
WARMUP_RUNS = 2
SECONDS_PER_SIZE = 3.0
"""Aim for about this much validation time per size; small sizes get more runs."""
CLI_RUNS = 5

# --- Flow generator -----------------------------------------------------------------------------

MIN_NODES = 20
LEAF_MAX = 9
"""Sections of at most this many nodes are one department; larger ones are menus."""
MIN_SECTION = 3
FIXED_NODES = 7
"""horario, cerrado, buzon_general, bienvenida, agente_aviso, agente, despedida."""
ROOT_CHILDREN = 8
SUB_CHILDREN = 7

TOPICS: tuple[tuple[str, str], ...] = (
    ("vida", "seguros de vida"),
    ("salud", "seguros de salud"),
    ("hogar", "seguros de hogar"),
    ("automovil", "seguros de automóvil"),
    ("viaje", "seguros de viaje"),
    ("mascotas", "seguros de mascotas"),
    ("decesos", "seguros de decesos"),
    ("comercio", "seguros para comercios"),
    ("empresas", "seguros para empresas"),
    ("accidentes", "seguros de accidentes"),
    ("dental", "seguros dentales"),
    ("moto", "seguros de moto"),
)
SUBJECTS: tuple[tuple[str, str], ...] = (
    ("parte", "dar un parte"),
    ("presupuesto", "pedir un presupuesto"),
    ("siniestro", "consultar un siniestro"),
    ("poliza", "modificar su póliza"),
    ("pagos", "información de pagos y recibos"),
    ("asistencia", "asistencia en carretera"),
    ("baja", "dar de baja una póliza"),
    ("citas", "pedir cita médica"),
    ("reembolso", "solicitar un reembolso"),
    ("documentos", "recibir documentación"),
    ("renovacion", "renovar su seguro"),
    ("quejas", "presentar una reclamación"),
)
NOTICES = (
    "Le informamos de que esta llamada puede ser grabada para mejorar la calidad del servicio.",
    "Recuerde que también puede gestionar sus seguros en nuestra aplicación.",
    "Tenga a mano su número de póliza, por favor.",
    "Nuestro tiempo medio de espera en este momento es inferior a dos minutos.",
)
HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
KEY_WORDS = {"*": "asterisco", "#": "almohadilla"}

Spec = tuple[str, list[str], str]
"""One node to write: its id, its body lines (unindented) and a comment ('' for none)."""


class _FlowWriter:
    """Writes one flow; every choice comes from a generator seeded with the size."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lines: list[str] = []
        self.config: dict[str, str] = {}
        self.queues: dict[str, list[str]] = {}
        """Queue name -> its settings' lines (unindented), for the 'queues' section."""
        self.count = 0
        self.seq = 0

    # Helpers -------------------------------------------------------------------------------------

    def new_base(self, word: str) -> str:
        self.seq += 1
        return f"{word}_{self.seq}"

    def render(self, specs: Sequence[Spec]) -> list[str]:
        out: list[str] = []
        for node_id, body, comment in specs:
            self.count += 1
            if comment:
                out.append(f"  # {comment}")
            out.append(f"  {node_id}:")
            out.extend(f"    {line}" for line in body)
            out.append("")
        return out

    def emit(self, specs: Sequence[Spec]) -> None:
        self.lines.extend(self.render(specs))

    def number(self, base: str) -> str:
        name = f"{base.upper()}_NUMBER"
        self.config[name] = f"+3491{self.rng.randrange(10**7):07d}"
        return "${" + name + "}"

    def shared(self, name: str, value: str) -> str:
        self.config.setdefault(name, value)
        return "${" + name + "}"

    @staticmethod
    def folded(key: str, text: str) -> list[str]:
        return [f"{key}: >-", *(f"  {line}" for line in textwrap.wrap(text, 88))]

    # Departments: the leaves of the menu tree ----------------------------------------------------

    def dial(self, base: str, label: str) -> list[Spec]:
        rng = self.rng
        buzon = f"{base}_buzon"
        to = self.number(base)
        dial = ["type: dial", f"to: {to}"]
        if rng.random() < 0.3:
            dial = ["type: dial", "to:", f"  - {to}", f"  - {self.number(base + '_guardia')}"]
        dial.append(f"timeout: {rng.choice((20, 25, 30, 40))}")
        if rng.random() < 0.4:
            dial.append(f"caller_id: {self.shared('CENTRALITA_NUMBER', '+34910000000')}")
        dial += ["record: true", f"no_answer: {buzon}"]
        if rng.random() < 0.5:
            dial.append(f"busy: {buzon}")
        intro = f"{base}_intro"
        text = f"Ha elegido {label}. Le pasamos con el departamento."
        record = [
            "type: record",
            f"prompt: En este momento no podemos atenderle. Deje su mensaje sobre {label}.",
            f"max_length: {rng.choice((60, 120, 180))}",
            "next: despedida",
        ]
        return [
            (intro, ["type: say", f"text: {text}", f"next: {base}_llamar"], ""),
            (f"{base}_llamar", dial, "ring the department; voicemail when nobody answers"),
            (buzon, record, ""),
        ]

    def dial_set(self, base: str, label: str) -> list[Spec]:
        """A dial department that first remembers which department the caller chose."""
        specs = self.dial(base, label)
        intro_id, intro, _ = specs[0]
        intro[1] = "text: Le pasamos con el departamento de {departamento}. Un momento."
        word = base.rsplit("_", 1)[0]
        marca = ["type: set", "values:", f"  departamento: {word}", f"next: {intro_id}"]
        return [(f"{base}_marca", marca, "remember the department for later texts"), *specs]

    def policy(self, base: str, label: str) -> list[Spec]:
        var = f"poliza_{self.seq}"
        buzon = f"{base}_buzon"
        ask = [
            "type: input",
            f"description: {label.capitalize()}; pide el número de póliza.",
            "prompt: Marque su número de póliza de ocho cifras.",
            f"variable: {var}",
            "min_digits: 8",
            "max_digits: 8",
            f"retries: {self.rng.randint(1, 3)}",
            "no_input: No hemos recibido ningún número.",
            "invalid: El número de póliza tiene ocho cifras.",
            f"next: {base}_confirmar",
            "exhausted: agente_aviso",
        ]
        switch = [
            "type: switch",
            f"variable: {var}",
            "cases:",
            '  - starts_with: "1"',
            f"    next: {base}_particulares",
            '  - one_of: ["2", "3"]',
            f"    next: {base}_empresas",
            "default: agente_aviso",
        ]
        part = self.number(base + "_part")
        emp = self.number(base + "_emp")
        return [
            (f"{base}_poliza", ask, "the policy number first, so the agent sees it"),
            (
                f"{base}_confirmar",
                ["type: say", f"text: Ha marcado {{{var}:digits}}. Gracias.", f"next: {base}_tipo"],
                "",
            ),
            (f"{base}_tipo", switch, "policies starting with 1 are personal, 2 and 3 business"),
            (f"{base}_particulares", ["type: dial", f"to: {part}", f"no_answer: {buzon}"], ""),
            (f"{base}_empresas", ["type: dial", f"to: {emp}", f"no_answer: {buzon}"], ""),
            (buzon, ["type: record", "prompt: Deje su mensaje.", "next: despedida"], ""),
        ]

    def queue(self, base: str, label: str) -> list[Spec]:
        buzon = f"{base}_buzon"
        name = base.replace("_", "-")
        music = self.shared("HOLD_MUSIC_URL", HOLD_MUSIC)
        callback = self.rng.random() < 0.5
        self.queues[name] = [
            f"description: Cola de {label}.",
            f"max_size: {self.rng.choice((20, 50, 100))}",
            f"max_wait: {self.rng.choice((120, 300, 600))}",
            f"strategy: {self.rng.choice(('round-robin', 'longest-idle'))}",
            f"hold_music: {music}",
            f"announce_every: {self.rng.choice((0, 30, 60))}",
            f"callback: {'true' if callback else 'false'}",
        ]
        enqueue = [
            "type: enqueue",
            f"queue: {name}",
            'leave_key: "*"',
            f"timed_out: {buzon}",
            f"full: {buzon}",
            f"left: {buzon}",
        ]
        if callback:
            enqueue += ['callback_key: "1"', "callback: despedida"]
        say = ["type: say", f"text: Para {label}, le ponemos en espera.", f"next: {base}_cola"]
        record = ["type: record", "prompt: Deje su mensaje después de la señal.", "next: despedida"]
        return [
            (f"{base}_espera", say, ""),
            (f"{base}_cola", enqueue, "callers may press * to leave a message instead"),
            (buzon, record, ""),
        ]

    def callback(self, base: str, label: str) -> list[Spec]:
        buzon = f"{base}_buzon"
        switch = [
            "type: switch",
            "variable: caller",
            "cases:",
            '  - starts_with: "+346"',
            f"    next: {base}_movil",
            '  - starts_with: "+347"',
            f"    next: {base}_movil",
            f"default: {buzon}",
        ]
        sms = "text: Le enviaremos un mensaje al {caller:digits} con los pasos a seguir."
        record = ["type: record", f"prompt: Para {label}, deje su mensaje.", "next: despedida"]
        return [
            (f"{base}_origen", switch, "Spanish mobiles are offered an SMS"),
            (f"{base}_movil", ["type: say", sms, f"next: {buzon}"], ""),
            (buzon, record, ""),
        ]

    def info(self, base: str, label: str) -> list[Spec]:
        if self.rng.random() < 0.5:
            audio = self.shared(f"{base.upper()}_AUDIO", f"https://audio.example.com/{base}.mp3")
            message = ["play: " + audio]
        else:
            message = self.folded("text", f"Información sobre {label}. " + " ".join(NOTICES[:2]))
        return [
            (f"{base}_info", ["type: say", *message, f"next: {base}_pausa"], "recorded info"),
            (f"{base}_pausa", ["type: pause", "seconds: 1", f"next: {base}_fin"], ""),
            (f"{base}_fin", ["type: hangup", "text: Gracias por llamar. Adiós."], ""),
        ]

    def hours(self, base: str, label: str) -> list[Spec]:
        buzon = f"{base}_buzon"
        closed = f"text: El servicio de {label} atiende de lunes a viernes de ocho a veinte."
        record = ["type: record", "prompt: Deje su mensaje.", "next: despedida"]
        hours = [
            "type: hours",
            "timezone: Europe/Madrid",
            "weekly:",
            "  monday-friday: [08:00-14:00, 15:00-20:00]",
            "  saturday: 09:00-13:00",
            "holidays:",
            "  - 01-01",
            "  - date: 12-24",
            "    name: Nochebuena",
            "    hours: 09:00-14:00",
            f"open: {base}_llamar",
            f"closed: {base}_cerrado",
        ]
        dial = ["type: dial", f"to: {self.number(base)}", "timeout: 30", f"no_answer: {buzon}"]
        return [
            (f"{base}_horario", hours, "this department keeps its own hours"),
            (f"{base}_llamar", dial, ""),
            (f"{base}_cerrado", ["type: say", closed, f"next: {buzon}"], ""),
            (buzon, record, ""),
        ]

    KINDS: tuple[tuple[str, int, int], ...] = (
        # kind, nodes it needs, weight
        ("dial", 3, 2),
        ("dial_set", 4, 2),
        ("queue", 3, 1),
        ("callback", 3, 1),
        ("info", 3, 1),
        ("hours", 4, 1),
        ("policy", 6, 3),
    )

    def leaf(self, budget: int, word: str, label: str) -> str:
        """Write a department of exactly `budget` nodes; return its first node."""
        kinds = [(kind, size, weight) for kind, size, weight in self.KINDS if size <= budget]
        kind, size, _ = self.rng.choices(kinds, weights=[w for _, _, w in kinds])[0]
        base = self.new_base(word)
        builders: dict[str, Callable[[str, str], list[Spec]]] = {
            "dial": self.dial,
            "dial_set": self.dial_set,
            "queue": self.queue,
            "callback": self.callback,
            "info": self.info,
            "hours": self.hours,
            "policy": self.policy,
        }
        body = builders[kind](base, label)
        pad = self.padding(budget - size, base, body[0][0])
        self.emit([*pad, *body])
        return (pad or body)[0][0]

    def padding(self, count: int, base: str, first: str) -> list[Spec]:
        """`count` nodes played before a department: notices, pauses, a consent menu."""
        specs: list[Spec] = []
        rng = self.rng
        remaining = count
        while remaining > 0:
            i = len(specs)
            node_id = f"{base}_previo_{i + 1}"
            if remaining >= 2 and rng.random() < 0.35:
                menu = [
                    "type: menu",
                    "prompt: >-",
                    "  Para continuar, pulse 1. Para escuchar de nuevo, pulse 2.",
                    "  Para hablar con un agente, pulse 0.",
                    "options:",
                    "  1: NEXT",
                    f"  2: {node_id}_repetir",
                    "  0: agente_aviso",
                    "retries: 2",
                    "no_input: No hemos recibido ninguna opción.",
                    "invalid: Opción no válida.",
                    "exhausted: agente_aviso",
                ]
                again = [
                    "type: goto",
                    f"target: {node_id}",
                    "limit: 2",
                    "exhausted: agente_aviso",
                ]
                specs.append((node_id, menu, "consent before going on"))
                specs.append((f"{node_id}_repetir", again, "repeat at most twice"))
                remaining -= 2
                continue
            choice = rng.random()
            if choice < 0.5:
                body = ["type: say", f"text: {rng.choice(NOTICES)}", "next: NEXT"]
            elif choice < 0.75:
                body = ["type: pause", f"seconds: {rng.randint(1, 3)}", "next: NEXT"]
            else:
                values = ["values:", f"  canal: ivr_{base}", '  prioridad: "normal"']
                body = ["type: set", *values, "next: NEXT"]
            specs.append((node_id, body, ""))
            remaining -= 1
        # Chain them: each NEXT is the following padding node (skipping a goto), or the department.
        heads = [s for s in specs if not s[0].endswith("_repetir")]
        follow = {
            s[0]: (heads[j + 1][0] if j + 1 < len(heads) else first) for j, s in enumerate(heads)
        }
        return [
            (node_id, [line.replace("NEXT", follow.get(node_id, first)) for line in body], note)
            for node_id, body, note in specs
        ]

    # Menus: the inner nodes of the tree --------------------------------------------------------

    def split(self, total: int, parts: int) -> list[int]:
        """`total` as `parts` random sizes of at least MIN_SECTION each."""
        spare = total - MIN_SECTION * parts
        cuts = sorted(self.rng.randint(0, spare) for _ in range(parts - 1))
        edges = [0, *cuts, spare]
        return [MIN_SECTION + b - a for a, b in itertools.pairwise(edges)]

    def section(self, budget: int, word: str, label: str, parent: str | None, number: str) -> str:
        """Write a section of exactly `budget` nodes (a menu tree or a department)."""
        if parent is not None and budget <= LEAF_MAX:
            return self.leaf(budget, word, label)
        root = parent is None
        menu_id = "menu_principal" if root else f"{self.new_base(word)}_menu"
        overhead = 1 if root else 3  # the menu; for submenus also an intro and a 'back' goto
        rest = budget - overhead
        most = min(ROOT_CHILDREN if root else SUB_CHILDREN, rest // MIN_SECTION)
        children = self.rng.randint(min(3, most), most)
        sizes = self.split(rest, children)
        pool = list(TOPICS if root else SUBJECTS)
        self.rng.shuffle(pool)
        header_at = len(self.lines)
        options: list[tuple[str, str, str]] = []
        for i, size in enumerate(sizes):
            child_word, child_label = pool[i % len(pool)]
            child_number = f"{number}.{i + 1}" if number else str(i + 1)
            self.lines.append(f"  # === {child_number} {child_label} " + "=" * 40)
            entry = self.section(size, child_word, child_label, menu_id, child_number)
            options.append((str(i + 1), entry, f"Para {child_label}, pulse {i + 1}."))
        options.append(("0", "agente_aviso", "Para hablar con un agente, pulse 0."))
        specs: list[Spec] = []
        if not root:
            back = f"{menu_id.removesuffix('_menu')}_volver"
            options.append(('"*"', back, "Para volver al menú anterior, pulse asterisco."))
            intro = ["type: say", f"text: Ha elegido {label}.", f"next: {menu_id}"]
            specs.append((f"{menu_id.removesuffix('_menu')}_intro", intro, ""))
        prompt = " ".join(text for _, _, text in options)
        menu = [
            "type: menu",
            *self.folded("prompt", prompt),
            "options:",
            *(f"  {key}: {target}" for key, target, _ in options),
            f"timeout: {self.rng.choice((5, 6, 8))}",
            f"retries: {self.rng.randint(1, 3)}",
            "no_input: No hemos recibido ninguna opción.",
            "invalid: Opción no válida.",
            "exhausted: agente_aviso",
        ]
        note = f"{len(options)} options; when the retries run out the caller goes to an agent"
        specs.append((menu_id, menu, note))
        if not root:
            again = ["type: goto", f"target: {parent}", "limit: 3", "exhausted: agente_aviso"]
            specs.append((back, again, "back to the menu above, at most three times"))
        self.lines[header_at:header_at] = self.render(specs)
        return specs[0][0]


def generate_flow(n: int) -> str:
    """A valid, realistic flow YAML text with exactly `n` nodes (deterministic for each n)."""
    if n < MIN_NODES:
        raise ValueError(f"generate_flow needs at least {MIN_NODES} nodes, got {n}")
    writer = _FlowWriter(seed=n)
    writer.shared("HOLD_MUSIC_URL", HOLD_MUSIC)
    writer.section(n - FIXED_NODES, "principal", "menú principal", None, "")
    tree = writer.lines
    writer.lines = []
    opening = [
        "type: hours",
        "description: Lunes a viernes de 9:00 a 19:00, hora de Madrid.",
        "timezone: Europe/Madrid",
        "weekly:",
        "  monday-friday: 09:00-19:00",
        "holidays:",
        "  - date: 01-01",
        "    name: Año Nuevo",
        "  - date: 01-06",
        "    name: Reyes",
        "  - date: 05-01",
        "    name: Día del Trabajo",
        "  - 12-25",
        "open: bienvenida",
        "closed: cerrado",
    ]
    head = writer.render(
        [
            (
                "horario",
                opening,
                "--- Business hours " + "-" * 70,
            ),
            (
                "cerrado",
                [
                    "type: say",
                    "text: Gracias por llamar. Nuestro horario es de nueve a siete.",
                    "next: buzon_general",
                ],
                "",
            ),
            (
                "buzon_general",
                [
                    "type: record",
                    "prompt: Deje su mensaje después de la señal.",
                    "max_length: 120",
                    "next: despedida",
                ],
                "",
            ),
            (
                "bienvenida",
                ["type: say", "text: Bienvenido a Seguros.", "next: menu_principal"],
                "--- Main menu " + "-" * 75,
            ),
        ]
    )
    tail = writer.render(
        [
            (
                "agente_aviso",
                ["type: say", "text: Le pasamos con un agente. Por favor, espere.", "next: agente"],
                "--- Agents and goodbye " + "-" * 66,
            ),
            (
                "agente",
                [
                    "type: enqueue",
                    "queue: general-queue",
                    "timed_out: buzon_general",
                    "full: buzon_general",
                ],
                "",
            ),
            ("despedida", ["type: hangup", "text: Gracias por llamar a Seguros. Adiós."], ""),
        ]
    )
    if writer.count != n:  # pragma: no cover - a generator bug, not a benchmark result
        raise AssertionError(f"generated {writer.count} nodes instead of {n}")
    config = [f'  {name}: "{value}"' for name, value in writer.config.items()]
    general = [
        "description: Cola general de agentes.",
        "max_size: 100",
        "max_wait: 600",
        "hold_music: ${HOLD_MUSIC_URL}",
    ]
    queues = [
        line
        for name, settings in {"general-queue": general, **writer.queues}.items()
        for line in (f"  {name}:", *(f"    {setting}" for setting in settings))
    ]
    lines = [
        "# yaml-language-server: $schema=../schema/flow.schema.json",
        "#",
        f"# A synthetic {n}-node insurance line written by benchmarks/bench_validate.py.",
        "# Menus nest by product and by request; department numbers live under 'config'.",
        "",
        f"name: bench-{n}",
        f"description: Flujo sintético de {n} nodos para medir la validación.",
        "entry: horario",
        "",
        "defaults:",
        "  voice: Polly.Lucia",
        "  language: es-ES",
        "",
        "config:",
        *config,
        "",
        "on_error:",
        "  text: Lo sentimos, se ha producido un error. Le pasamos con un agente.",
        "  next: agente",
        "",
        "# Call queues, declared once; enqueue nodes name them.",
        "queues:",
        *queues,
        "",
        "nodes:",
        *head,
        *tree,
        *tail,
    ]
    return "\n".join(lines)


# --- Measurement --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Wall times of one measured operation, in milliseconds."""

    runs: int
    median_ms: float
    tail_ms: float
    tail_kind: str
    """'p99' when there are at least 100 runs, else 'max'."""
    min_ms: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        ms = sorted(s * 1000 for s in samples)
        if len(ms) >= 100:
            tail, kind = statistics.quantiles(ms, n=100, method="inclusive")[98], "p99"
        else:
            tail, kind = ms[-1], "max"
        return cls(len(ms), statistics.median(ms), tail, kind, ms[0])


@dataclass(frozen=True)
class SizeResult:
    """check_text against a bare YAML parse, for one flow size."""

    nodes: int
    yaml_lines: int
    yaml_bytes: int
    problems: int
    validate: Stats
    parse: Stats
    us_per_node: float
    ratio: float
    """Median validate time / median parse time."""


def _timed(func: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _check_valid(n: int, text: str) -> int:
    """Fail loudly unless the generated text is a valid flow of `n` nodes; return problems."""
    report = check_text(text, f"bench-{n}.yaml")
    if report.flow is None or report.errors:
        shown = "\n".join(f"  {p}" for p in report.errors[:20])
        sys.exit(f"generated {n}-node flow is not valid ({len(report.errors)} errors):\n{shown}")
    if len(report.flow.nodes) != n:
        sys.exit(f"generated flow has {len(report.flow.nodes)} nodes instead of {n}")
    return len(report.problems)


def measure_size(n: int, seconds: float) -> SizeResult:
    """Time check_text and the bare parse of an n-node flow, interleaved run by run."""
    text = generate_flow(n)
    problems = _check_valid(n, text)

    def validate() -> object:
        return check_text(text, f"bench-{n}.yaml")

    def parse() -> object:
        return yaml.load(text, Loader=yaml.CSafeLoader)

    for _ in range(WARMUP_RUNS):
        first = _timed(validate)
        _timed(parse)
    runs = max(MIN_RUNS, min(MAX_RUNS, math.ceil(seconds / max(first, 1e-6))))
    validate_times: list[float] = []
    parse_times: list[float] = []
    for _ in range(runs):
        validate_times.append(_timed(validate))
        parse_times.append(_timed(parse))
    v, p = Stats.of(validate_times), Stats.of(parse_times)
    return SizeResult(
        nodes=n,
        yaml_lines=text.count("\n") + 1,
        yaml_bytes=len(text.encode()),
        problems=problems,
        validate=v,
        parse=p,
        us_per_node=v.median_ms * 1000 / n,
        ratio=v.median_ms / p.median_ms,
    )


def loglog_exponent(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) against log(n): 1.0 is linear, 2.0 quadratic."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass(frozen=True)
class CliResult:
    """`flowpbx ...` as a subprocess: interpreter start, imports, validation and output."""

    command: str
    runs: int
    median_ms: float
    min_ms: float
    max_ms: float
    exit_code: int


def _flowpbx() -> str:
    beside = Path(sys.executable).parent / "flowpbx"
    if beside.exists():
        return str(beside)
    local = ROOT / ".venv" / "bin" / "flowpbx"
    return str(local) if local.exists() else (shutil.which("flowpbx") or "flowpbx")


def measure_cli(args: Sequence[str], shown: str, runs: int = CLI_RUNS) -> CliResult:
    command = [_flowpbx(), *args]
    times: list[float] = []
    code = 0
    subprocess.run(command, cwd=ROOT, capture_output=True, check=False)  # warm the file cache
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        code = done.returncode
    ms = [t * 1000 for t in times]
    return CliResult(shown, runs, statistics.median(ms), min(ms), max(ms), code)


# --- Report -------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "?"
    return f"{head}{' (modified)' if dirty else ''}" if head else "?"


def machine_info() -> dict[str, Any]:
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": nproc,
        "cpu": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "pyyaml": _version("pyyaml"),
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "jsonschema": _version("jsonschema"),
        "flowpbx": _version("flowpbx"),
        "git": _git_commit(),
    }


def markdown(
    sizes: Sequence[SizeResult], growth: dict[str, float], cli: Sequence[CliResult]
) -> str:
    lines = [
        "| nodes | YAML lines | runs | validate median (ms) | validate p99/max (ms) "
        "| µs/node | parse median (ms) | validate/parse |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sizes:
        tail = f"{r.validate.tail_ms:.1f} ({r.validate.tail_kind})"
        lines.append(
            f"| {r.nodes:,} | {r.yaml_lines:,} | {r.validate.runs} | {r.validate.median_ms:.1f} "
            f"| {tail} | {r.us_per_node:.0f} | {r.parse.median_ms:.2f} | {r.ratio:.1f}× |"
        )
    lines += ["", "| growth | value |", "|---|---:|"]
    if "linearity" in growth:
        lines.append(
            f"| time({growth['n_max']:,.0f}) / time({growth['n_min']:,.0f}) ÷ "
            f"{growth['n_max'] / growth['n_min']:g} (1.0 = linear) | {growth['linearity']:.2f} |"
        )
    if "exponent" in growth:
        lines.append(f"| fitted exponent, validate (time ∝ n^k) | {growth['exponent']:.2f} |")
        lines.append(f"| fitted exponent, parse only | {growth['parse_exponent']:.2f} |")
    if cli:
        lines += ["", "| command (median of runs, interpreter start included) | ms | exit |"]
        lines.append("|---|---:|---:|")
        lines += [f"| `{c.command}` | {c.median_ms:.0f} | {c.exit_code} |" for c in cli]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), metavar="N")
    parser.add_argument(
        "--seconds",
        type=float,
        default=SECONDS_PER_SIZE,
        help="validation time to aim for per size (default %(default)s; at least 7 runs)",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess timings")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    sizes: list[int] = sorted(set(args.sizes))

    info = machine_info()
    print(
        f"flow validation benchmark: {info['cpu']}, {info['nproc']} CPUs, "
        f"Python {info['python']}, {info['date']}",
        file=sys.stderr,
    )
    results: list[SizeResult] = []
    for n in sizes:
        print(f"  {n} nodes ...", file=sys.stderr, flush=True)
        results.append(measure_size(n, args.seconds))

    growth: dict[str, float] = {}
    if len(results) >= 2:
        low, high = results[0], results[-1]
        growth = {
            "n_min": low.nodes,
            "n_max": high.nodes,
            "time_ratio": high.validate.median_ms / low.validate.median_ms,
            "linearity": high.validate.median_ms
            / low.validate.median_ms
            / (high.nodes / low.nodes),
            "exponent": loglog_exponent([(r.nodes, r.validate.median_ms) for r in results]),
            "parse_exponent": loglog_exponent([(r.nodes, r.parse.median_ms) for r in results]),
        }

    cli: list[CliResult] = []
    generation_ok = True
    if not args.no_cli:
        print("  flowpbx validate (subprocess) ...", file=sys.stderr, flush=True)
        cli_nodes = TARGET_NODES if TARGET_NODES in sizes else sizes[-1]
        with tempfile.TemporaryDirectory(prefix="flowpbx-bench-") as tmp:
            flow = Path(tmp) / f"bench_{cli_nodes}.yaml"
            flow.write_text(generate_flow(cli_nodes), encoding="utf-8")
            big = measure_cli(["validate", str(flow)], f"flowpbx validate <{cli_nodes} nodes>")
        generation_ok = big.exit_code == 0
        cli = [
            measure_cli(["--version"], "flowpbx --version"),
            big,
            measure_cli(["validate", "flows/"], "flowpbx validate flows/"),
        ]

    at_target = next((r for r in results if r.nodes == TARGET_NODES), None)
    checks: dict[str, bool] = {}
    if at_target is not None:
        checks[f"under {TARGET_MS:.0f} ms at {TARGET_NODES} nodes"] = (
            at_target.validate.median_ms < TARGET_MS
        )
    if "exponent" in growth:
        checks[f"roughly linear (exponent <= {LINEAR_EXPONENT})"] = (
            growth["exponent"] <= LINEAR_EXPONENT
        )
    verdict = "PASS" if checks and all(checks.values()) else "FAIL"

    table = markdown(results, growth, cli)
    print(table)
    print()
    for name, ok in checks.items():
        print(f"- {'PASS' if ok else 'FAIL'}: {name}")
    print(f"\nTarget (issue #2: under 1 s for 2,000 nodes, roughly linear): {verdict}")

    payload = {
        "benchmark": "flow validation (issue #2)",
        "machine": info,
        "target": {
            "nodes": TARGET_NODES,
            "max_ms": TARGET_MS,
            "max_exponent": LINEAR_EXPONENT,
            "checks": checks,
            "verdict": verdict,
        },
        "sizes": [asdict(r) for r in results],
        "growth": growth,
        "cli": [asdict(c) for c in cli],
        "markdown": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"\nresults written to {args.output}", file=sys.stderr)
    if not generation_ok:
        sys.exit("the generated flow failed `flowpbx validate` (see the exit code above)")


if __name__ == "__main__":
    main()
