"""Edge tier decoding: one ``generate`` call under a deadline, stop sequences, and streaming from a worker thread.

The deadline and cancellation are a transformers StoppingCriteria, so a call stops between tokens rather than
running to ``max_new_tokens``; streaming runs ``generate`` on a thread and hands its text over as it comes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import cache
from typing import Any

from tierflow.runtimes.errors import TierTimeoutError


@dataclass
class Prepared:
    """One call's encoded prompt and limits."""

    input_ids: Any
    attention_mask: Any
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    stop: list[str]
    deadline: float
    timeout_s: float


# Runs ``generate`` for a prepared call: (cancel event, streamer or None) -> (new token ids, interrupt criterion).
DecodeFn = Callable[[threading.Event, Any], tuple[list[int], Any]]


class StopFilter:
    """Cuts generated text at the first stop sequence, holding back text that may begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        """The part of the text so far that is certainly output (before any stop sequence)."""
        if self.hit:
            return ""
        self.buffer += piece
        cuts = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.hit = True
            out, self.buffer = self.buffer[: min(cuts)], ""
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), hold, -1):
                if self.buffer.endswith(stop[:n]):
                    hold = n
                    break
        out, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        """What was held back, once decoding has ended without reaching a stop sequence."""
        out, self.buffer = ("" if self.hit else self.buffer), ""
        return out


@cache
def interrupt_class() -> type:
    """A transformers StoppingCriteria that ends decoding at a monotonic deadline or on cancellation."""
    import torch
    from transformers import StoppingCriteria

    class Interrupt(StoppingCriteria):
        def __init__(self, deadline: float, cancel: threading.Event) -> None:
            self.deadline = deadline
            self.cancel = cancel
            self.timed_out = False

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            if time.monotonic() >= self.deadline:
                self.timed_out = True
            stop = self.timed_out or self.cancel.is_set()
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return Interrupt


def generate_ids(model: Any, tokenizer: Any, eos_ids: set[int], call: Prepared, cancel: threading.Event, *,
                 device: str, seed: int, streamer: Any = None) -> tuple[list[int], Any]:
    """Run ``generate`` for one prepared call; returns the new token ids and the interrupt criterion."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    interrupt = interrupt_class()(call.deadline, cancel)
    sampling = call.temperature > 0
    pad = tokenizer.pad_token_id
    settings: dict[str, Any] = {"max_new_tokens": call.max_new_tokens, "do_sample": sampling,
                                "eos_token_id": sorted(eos_ids), "pad_token_id": min(eos_ids) if pad is None else pad}
    if sampling:
        settings["temperature"] = call.temperature
    else:  # greedy: clear the sampling knobs the checkpoint's defaults may carry
        settings.update(temperature=None, top_p=None, top_k=None)
    if call.stop:
        settings["stop_strings"] = call.stop
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.inference_mode(), torch.random.fork_rng(devices=devices, enabled=sampling):
        if sampling:
            torch.manual_seed(seed)
        output = model.generate(
            input_ids=call.input_ids, attention_mask=call.attention_mask,
            generation_config=GenerationConfig(**settings), stopping_criteria=StoppingCriteriaList([interrupt]),
            tokenizer=tokenizer if call.stop else None, streamer=streamer)
    return output[0, call.prompt_tokens:].tolist(), interrupt


def stream_decode(run: DecodeFn, tokenizer: Any, call: Prepared, tier: str) -> Generator[str, None, list[int]]:
    """Run ``run`` on a worker thread and yield its text as it is decoded; returns the new token ids.

    Closing the generator (a consumer that stops reading) cancels decoding and waits for the thread; a call
    past its deadline raises TierTimeoutError.
    """
    from transformers import TextIteratorStreamer

    cancel = threading.Event()
    outcome: dict[str, Any] = {}
    # The queue wait is a safety net: decoding itself stops at the deadline and then ends the stream.
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                    timeout=max(0.0, call.deadline - time.monotonic()) + 30.0)

    def work() -> None:
        try:
            outcome["ids"], outcome["interrupt"] = run(cancel, streamer)
        except BaseException as exc:  # re-raised in the consuming thread below
            outcome["error"] = exc
            streamer.end()

    worker = threading.Thread(target=work, name=f"edge-{tier}", daemon=True)
    try:
        worker.start()
        try:
            yield from streamer
        except queue.Empty:
            cancel.set()
            raise TierTimeoutError(tier, call.timeout_s) from None
        worker.join()
    finally:
        cancel.set()  # a consumer that stops reading ends decoding too
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    if outcome["interrupt"].timed_out:
        raise TierTimeoutError(tier, call.timeout_s)
    return outcome["ids"]
