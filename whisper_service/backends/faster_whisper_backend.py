"""faster-whisper (CTranslate2): int8 on CPU by default, float16 on CUDA when present.

Besides one-by-one :meth:`FasterWhisperTranscriber.transcribe`, the transcriber decodes
several pieces in one model call (:meth:`FasterWhisperTranscriber.transcribe_batch`):
the work a worker does per second grows when the decoder sees several utterances at once.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.languages import languages_for
from shared.models import materialize
from whisper_service.backends import DecodeOptions, Segment, Transcription, Word

#: faster-whisper's own defaults for ``WhisperModel.transcribe``; the batched path applies
#: the same thresholds so that it keeps exactly the results the one-by-one path keeps.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
MAX_INITIAL_TIMESTAMP_S = 1.0
#: Whisper's audio rate.
SAMPLE_RATE = 16000
#: New tokens a short encoder window may decode per second of it: fast speech is about 4.
TOKENS_PER_S = 8


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "default":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class FasterWhisperTranscriber:
    backend = "faster-whisper"

    def __init__(self, name: str, *, device: str, compute_type: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        self.name = name
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.model = WhisperModel(
            materialize(name),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads,
            num_workers=1,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = tuple(languages_for(self.multilingual, self.model.model.num_languages))

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        return self._transcribe(audio, options)

    def _transcribe(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        *,
        from_s: float = 0.0,
        before: Sequence[Segment] = (),
    ) -> Transcription:
        """faster-whisper's own pipeline; ``from_s`` starts it later in the audio (the
        batched path continues there after its first window, see :meth:`transcribe_batch`)."""
        if self._short_window_fits(audio, options) and not from_s:
            return self._short_window(audio, options)
        segments, info = self.model.transcribe(
            audio,
            language=options.language if self.multilingual else "en",
            task=options.task if self.multilingual else "transcribe",
            beam_size=options.beam_size,
            initial_prompt=options.initial_prompt if not from_s else None,
            word_timestamps=options.word_timestamps,
            without_timestamps=options.without_timestamps,
            condition_on_previous_text=options.condition_on_previous_text,
            vad_filter=options.vad_filter and not from_s,
            clip_timestamps=[from_s] if from_s else "0",
            **_temperature(options.temperature, options.temperature_fallback),
        )
        segs = list(before) + [
            Segment(
                s.start,
                s.end,
                s.text.strip(),
                s.no_speech_prob,
                s.avg_logprob,
                s.compression_ratio,
                s.temperature or 0.0,
                None if s.words is None else [Word(w.start, w.end, w.word, w.probability) for w in s.words],
            )
            for s in segments
        ]
        result = _transcription(segs, info.language, info.language_probability)
        if options.emit_after_s > 0:
            # The words come from the aligner, not from a word-timed decode: that one
            # decodes the silence after the last word again (``align_words``).
            if not options.word_timestamps:
                result = self.align_words(audio, result, options)
            segs = _after(result.segments, options.emit_after_s, keep_words=options.word_timestamps)
            result = _transcription(segs, info.language, info.language_probability)
        return result

    def align_words(self, audio: np.ndarray, result: Transcription, options: DecodeOptions) -> Transcription:
        """``result`` (decoded from ``audio``) with word timings, its text left as it is.

        Asking faster-whisper's decode for word timings also moves where it resumes after
        each window (to the last word's end), so the model decodes the silence after it
        again and may add words ("Thank you. Thank you." after a jfk phrase, measured): a
        labelled file came back with other words than the same file unlabelled. Here the
        words are aligned to the tokens already decoded instead, by faster-whisper's own
        aligner (cross-attention and dynamic time warping, :meth:`WhisperModel.add_word_timestamps`),
        one encoder pass per window of up to 30 s of segments (one for a piece of the splitter's).
        The segments keep their text; their times become their words'."""
        from faster_whisper.audio import pad_or_trim

        model = self.model
        fe = model.feature_extractor
        features = fe(audio)
        content = features.shape[-1] - 1
        fps = model.frames_per_second
        tokenizer = self._tokenizer(options, result.language or options.language or "en")
        defaults = inspect.signature(model.transcribe).parameters
        prepend, append = defaults["prepend_punctuations"].default, defaults["append_punctuations"].default
        aligned: list[Segment] = []
        last_speech = 0.0
        todo = [seg for seg in result.segments if seg.text.strip()]
        while todo:
            # A window from the next segment's start holds it and the segments after it
            # that end inside the window (a decode's windows resume where its last
            # timestamp fell, not on 30 s marks).
            seek = min(int(todo[0].start * fps), max(content - 1, 0))
            end_s = (seek + fe.nb_max_frames) / fps + 0.01
            count = 1
            while count < len(todo) and todo[count].end <= end_s:
                count += 1
            inside, todo = todo[:count], todo[count:]
            size = max(1, min(fe.nb_max_frames, content - seek))
            encoded = model.encode(pad_or_trim(features[:, seek : seek + size]))
            subs = [
                {
                    "seek": seek,
                    "start": seg.start,
                    "end": seg.end,
                    "tokens": tokenizer.encode(" " + seg.text.strip()),
                }
                for seg in inside
            ]
            last_speech = model.add_word_timestamps(
                [subs], tokenizer, encoded, size, prepend, append, last_speech_timestamp=last_speech
            )
            for seg, sub in zip(inside, subs, strict=True):
                words = [
                    Word(w["start"], w["end"], w["word"], w["probability"]) for w in sub.get("words", [])
                ]
                aligned.append(dataclasses.replace(seg, start=sub["start"], end=sub["end"], words=words))
        return dataclasses.replace(result, segments=sorted(aligned, key=lambda seg: seg.start))

    def _short_window_fits(self, audio: np.ndarray, options: DecodeOptions) -> bool:
        """The short encoder window decodes one greedy pass of known language and nothing
        else; anything more takes faster-whisper's own pipeline."""
        window = options.encoder_window_s
        language = options.language if self.multilingual else "en"
        return (
            0 < window < 30
            and 0 < len(audio) <= window * SAMPLE_RATE
            and language is not None
            and not (options.word_timestamps or options.vad_filter or options.emit_after_s)
        )

    def _short_window(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        """One decode of ``audio`` on an encoder window of ``encoder_window_s`` instead of
        30 s. faster-whisper always pads the features to 30 s, and the encoder's cost grows
        with its input (tiny.en int8 on one core: 0.65 s for 30 s, 0.09 s for 10 s), so a
        partial of a few seconds spent most of its time encoding silence. The features are
        padded to the window with zeros, as faster-whisper pads them to 30 s; the decode is
        the first-window one of :meth:`_transcribe` (same prompt, suppressed tokens,
        temperature 0), with new tokens capped for the window's length so that a confused
        short window cannot loop until 448 tokens."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        fe = self.model.feature_extractor
        frames = round(options.encoder_window_s * SAMPLE_RATE) // fe.hop_length
        content = fe(audio)[:, :-1]  # as faster-whisper's pipeline: content frames, padded with zeros
        features = pad_or_trim(content, frames)
        language = options.language if self.multilingual else "en"
        tokenizer = self._tokenizer(options, language)
        previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
        prompt = self.model.get_prompt(tokenizer, previous, without_timestamps=options.without_timestamps)
        max_new = min(self.model.max_length - len(prompt), int(options.encoder_window_s * TOKENS_PER_S) + 8)
        result = self.model.model.generate(
            self.model.encode(features),
            [prompt],
            beam_size=options.beam_size,
            max_length=len(prompt) + max(1, max_new),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        avg_logprob = result.scores[0] * len(result.sequences_ids[0]) / (len(result.sequences_ids[0]) + 1)
        segment = Segment(
            0.0,
            len(audio) / SAMPLE_RATE,
            text,
            result.no_speech_prob,
            avg_logprob,
            get_compression_ratio(text),
        )
        return _transcription([segment] if text else [], language, None)

    def transcribe_batch(
        self,
        items: Sequence[tuple[np.ndarray, DecodeOptions]],
        *,
        reraise: tuple[type[BaseException], ...] = (),
    ) -> list[Transcription | Exception]:
        """Transcribe several pieces with one decoder call per beam size (and, on a GPU, one
        encoder call), each piece's result (or the exception it raised) at its own index.

        The results are the ones :meth:`transcribe` gives for each piece alone: the batch
        runs only what faster-whisper's pipeline does in its first 30 s window at
        temperature 0 (same features, prompt, suppressed tokens, thresholds and segment
        splitting), and a piece leaves the batch for the one-by-one pipeline where that
        pipeline would do more:

        - it would fall back to a higher temperature (compression ratio or log probability
          threshold missed): decoded again alone, from the start;
        - the window ends inside an unfinished segment, or the piece is longer than one
          window: the segments found are kept and the pipeline goes on alone from there;
        - word timestamps or a fixed temperature were asked for, or the audio is too short
          for one feature frame: alone from the start (rare, not worth a second code path).

        Language detection (multilingual models, no language given) is batched too, on the
        same window faster-whisper detects on. A piece that fails alone (say, a language the
        model does not know) gets its exception; a failure of a batched model call sends
        every piece of that call through the one-by-one path, so one bad piece never costs
        the others their transcripts. Exceptions of a ``reraise`` type (the worker's time
        limit) end the whole batch instead."""
        results: list[Transcription | Exception | None] = [None] * len(items)
        pending: list[_Item] = []
        for index, (audio, options) in enumerate(items):
            alone = (
                options.word_timestamps
                or options.temperature
                or options.vad_filter
                or options.emit_after_s
                or self._short_window_fits(audio, options)
            )
            if len(audio) == 0 or alone:
                results[index] = self._alone(audio, options, reraise)
                continue
            try:
                item = self._prepare(index, audio, options)
            except reraise:
                raise
            except Exception as exc:
                results[index] = exc
                continue
            if item is None:
                results[index] = self._alone(audio, options, reraise)
            else:
                pending.append(item)
        self._detect_languages(pending, results, reraise)
        pending = [item for item in pending if results[item.index] is None]
        for beam_size in sorted({item.options.beam_size for item in pending}):
            group = [item for item in pending if item.options.beam_size == beam_size]
            try:
                decoded = self._decode_first_window(group, beam_size)
            except reraise:
                raise
            except Exception:
                decoded = [None] * len(group)  # the batched call failed: every piece alone
            for item, first in zip(group, decoded, strict=True):
                results[item.index] = self._finish(item, first, reraise)
        return [r if r is not None else RuntimeError("piece not transcribed") for r in results]

    def _alone(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        reraise: tuple[type[BaseException], ...],
        *,
        from_s: float = 0.0,
        before: Sequence[Segment] = (),
    ) -> Transcription | Exception:
        try:
            return self._transcribe(audio, options, from_s=from_s, before=before)
        except reraise:
            raise
        except Exception as exc:
            return exc

    def _prepare(self, index: int, audio: np.ndarray, options: DecodeOptions) -> _Item | None:
        """What ``WhisperModel.transcribe`` computes before decoding its first window; None
        when the piece has no frame to decode (faster-whisper decodes nothing then)."""
        from faster_whisper.audio import pad_or_trim

        features = self.model.feature_extractor(audio)
        content_frames = features.shape[-1] - 1
        if content_frames <= 0:
            return None
        segment_size = min(self.model.feature_extractor.nb_max_frames, content_frames)
        language = options.language if self.multilingual else "en"
        if language is not None:
            self._tokenizer(options, language)  # an unknown language fails here, for this piece only
        return _Item(
            index=index,
            audio=audio,
            options=options,
            features=features,
            window=pad_or_trim(features[:, :segment_size]),
            content_frames=content_frames,
            segment_size=segment_size,
            language=language,
        )

    def _tokenizer(self, options: DecodeOptions, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        task = options.task if self.multilingual else "transcribe"
        return Tokenizer(self.model.hf_tokenizer, self.multilingual, task=task, language=language)

    def _detect_languages(
        self,
        items: list[_Item],
        results: list[Transcription | Exception | None],
        reraise: tuple[type[BaseException], ...],
    ) -> None:
        """``WhisperModel.detect_language`` with one segment, for all undetermined pieces at once:
        the most probable language token on the piece's first 30 s of features."""
        from faster_whisper.audio import pad_or_trim

        todo = [item for item in items if item.language is None]
        if not todo:
            return
        frames = self.model.feature_extractor.nb_max_frames
        try:
            encoded = self._encode([pad_or_trim(i.features[..., :frames]) for i in todo])
            detected = self.model.model.detect_language(encoded)
        except reraise:
            raise
        except Exception:
            for item in todo:  # each piece detects its own language in the one-by-one path
                results[item.index] = self._alone(item.audio, item.options, reraise)
            return
        for item, languages in zip(todo, detected, strict=True):
            token, probability = languages[0]
            item.language, item.language_probability = token[2:-2], probability
            try:
                self._tokenizer(item.options, item.language)
            except reraise:
                raise
            except Exception as exc:
                results[item.index] = exc

    def _encode(self, windows: list[np.ndarray]) -> Any:
        """The encoder output of every window, as one batch for the decoder.

        On a GPU one batched call is what makes batching pay. On the CPU the encoder is
        bound by arithmetic, not by calls (a 30 s window is a large matrix product even
        alone), and one window at a time measured no slower (often faster: less memory
        in flight), so there each window is encoded alone, exactly as one by one, and
        only the outputs are stacked for the batched decoder."""
        import ctranslate2

        if self.device != "cpu" or len(windows) == 1:
            return self.model.encode(np.stack(windows))
        outputs = [np.asarray(self.model.encode(window)) for window in windows]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(outputs)))

    def _decode_first_window(self, items: list[_Item], beam_size: int) -> list[_FirstWindow | None]:
        """``generate_with_fallback``'s first attempt (temperature 0) for every piece at once."""
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        model = self.model
        tokenizers = [self._tokenizer(item.options, item.language or "en") for item in items]
        prompts = [
            model.get_prompt(
                tokenizer,
                _prompt_tokens(tokenizer, item.options.initial_prompt),
                without_timestamps=item.options.without_timestamps,
            )
            for item, tokenizer in zip(items, tokenizers, strict=True)
        ]
        encoded = self._encode([item.window for item in items])
        generated = model.model.generate(
            encoded,
            prompts,
            beam_size=beam_size,
            patience=1,
            length_penalty=1,
            repetition_penalty=1,
            no_repeat_ngram_size=0,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]),
            max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP_S / model.time_precision),
        )
        out: list[_FirstWindow | None] = []
        for tokenizer, result in zip(tokenizers, generated, strict=True):
            tokens = result.sequences_ids[0]
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # length_penalty 1
            compression_ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
            out.append(_FirstWindow(tokenizer, tokens, avg_logprob, compression_ratio, result.no_speech_prob))
        return out

    def _finish(
        self, item: _Item, first: _FirstWindow | None, reraise: tuple[type[BaseException], ...]
    ) -> Transcription | Exception:
        """The first window's segments, as ``generate_segments`` yields them, then the rest
        of the pipeline alone when faster-whisper would go on."""
        options = dataclasses.replace(item.options, language=item.language)
        if first is None or (options.temperature_fallback and first.needs_fallback()):
            return self._alone(item.audio, options, reraise)
        segments: list[Segment] = []
        if first.is_silence():
            seek = item.segment_size  # faster-whisper skips the window
        else:
            time_per_frame = self.model.feature_extractor.time_per_frame
            pieces, seek, _ = self.model._split_segments_by_timestamps(
                tokenizer=first.tokenizer,
                tokens=first.tokens,
                time_offset=0.0,
                segment_size=item.segment_size,
                segment_duration=item.segment_size * time_per_frame,
                seek=0,
            )
            for piece in pieces:
                text = first.tokenizer.decode(piece["tokens"])
                if piece["start"] == piece["end"] or not text.strip():
                    continue
                segments.append(
                    Segment(
                        piece["start"],
                        piece["end"],
                        text.strip(),
                        first.no_speech_prob,
                        first.avg_logprob,
                        first.compression_ratio,
                        0.0,
                    )
                )
        if seek < item.content_frames:
            from_s = seek * self.model.feature_extractor.time_per_frame
            return self._alone(item.audio, options, reraise, from_s=from_s, before=segments)
        return _transcription(segments, item.language, item.language_probability)


def _transcription(segs: list[Segment], language: str | None, probability: float | None) -> Transcription:
    return Transcription(
        text=" ".join(s.text for s in segs if s.text).strip(),
        language=language,
        language_probability=probability,
        segments=segs,
    )


def _after(segments: list[Segment], boundary_s: float, *, keep_words: bool) -> list[Segment]:
    """The segments cut to the words whose middle lies after ``boundary_s`` (the end of the
    left context), their times from those words; segments with none left are dropped.
    (By the word's end instead, 0.15 s past the boundary: the same WER, trading jfk's
    "what", which the aligner stretches back over the pause before it, for a repeated
    "you" stretched forward over the pause after it.)"""
    out = []
    for segment in segments:
        words = [w for w in segment.words or [] if (w.start + w.end) / 2 >= boundary_s]
        if not words:
            continue
        text = "".join(w.word for w in words).strip()
        out.append(
            dataclasses.replace(segment, start=words[0].start, text=text, words=words if keep_words else None)
        )
    return out


def _temperature(temperature: float | None, fallback: bool = True) -> dict[str, float]:
    """OpenAI's convention: 0 (or nothing) lets the model raise the temperature when decoding
    fails, so keep faster-whisper's fallback schedule; a positive value is used as given.
    Without ``fallback`` the one decode at that temperature (0 when unset) is kept."""
    if not fallback:
        return {"temperature": temperature or 0.0}
    return {"temperature": temperature} if temperature else {}


@dataclass
class _Item:
    """One piece of a batch and the features faster-whisper would compute for it."""

    index: int
    audio: np.ndarray
    options: DecodeOptions
    features: np.ndarray  # log-Mel of the whole piece
    window: np.ndarray  # its first window, padded to 30 s: the encoder's input
    content_frames: int
    segment_size: int
    language: str | None
    language_probability: float = 1.0


@dataclass
class _FirstWindow:
    tokenizer: Any
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float

    def needs_fallback(self) -> bool:
        """``generate_with_fallback``'s test for trying a higher temperature."""
        failed = self.compression_ratio > COMPRESSION_RATIO_THRESHOLD or self.avg_logprob < LOG_PROB_THRESHOLD
        silent = self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOG_PROB_THRESHOLD
        return failed and not silent

    def is_silence(self) -> bool:
        """``generate_segments``' no-speech test: the window is skipped."""
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and not self.avg_logprob > LOG_PROB_THRESHOLD


def _prompt_tokens(tokenizer: Any, initial_prompt: str | None) -> list[int]:
    """``generate_segments`` puts the initial prompt before the first window's decoding."""
    return [] if initial_prompt is None else list(tokenizer.encode(" " + initial_prompt.strip()))
