"""Models kept in memory per worker process, least recently used evicted first.

Loading takes seconds and memory; keeping a few models resident is what makes a worker
fast for every job after the first. One lock serialises loads so a control message and
a job asking for the same model never load it twice.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog

from shared import metrics
from whisper_service.backends import Transcriber

log = structlog.get_logger()


class ModelCache:
    def __init__(self, loader: Callable[[str], Transcriber], max_models: int) -> None:
        self._loader = loader
        self._max = max(1, max_models)
        self._models: OrderedDict[str, Transcriber] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[Transcriber, float]:
        """The model and how long loading it took (0.0 when it was already resident)."""
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name], 0.0
            log.info("model_load_started", model=name)
            t0 = time.perf_counter()
            model = self._loader(name)
            took = time.perf_counter() - t0
            self._models[name] = model
            while len(self._models) > self._max:
                evicted, _ = self._models.popitem(last=False)
                log.info("model_evicted", model=evicted)
            metrics.MODEL_LOAD_DURATION.labels(model=name).observe(took)
            metrics.MODELS_LOADED.set(len(self._models))
            log.info("model_loaded", model=name, load_time_s=round(took, 3), backend=model.backend)
            return model, took

    def names(self) -> list[str]:
        return list(self._models)
