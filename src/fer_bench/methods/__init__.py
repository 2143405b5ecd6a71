"""Method registry: method key → LightningModule class."""

from fer_bench.methods.baseline import Baseline

METHODS = {
    "baseline": Baseline,
}
