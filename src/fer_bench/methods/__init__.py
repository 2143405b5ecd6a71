"""Method registry: method key → LightningModule class."""

from fer_bench.methods.baseline import Baseline
from fer_bench.methods.clip_gfer import ClipGfer
from fer_bench.methods.continual import Continual
from fer_bench.methods.multitask import Multitask
from fer_bench.methods.qcs import QCS

METHODS = {
    "baseline": Baseline,
    "qcs": QCS,
    "multitask": Multitask,
    "clip_gfer": ClipGfer,
    "continual": Continual,
}
