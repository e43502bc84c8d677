"""Memories from conversations: extraction jobs, consolidation, temporal validity, summaries.

A message added with extraction on (`add_message(..., extract=...)`, `remember`) queues an
`extract` job in the transaction that stores it; the write returns at once. A worker
(`run_jobs`, driven by `memvault.service.worker`) leases due jobs, runs the extractor off
the event loop and consolidates each fact against the user's live facts:

1. the same text as a current fact -> **merge**: the stored fact gains this message as a
   source (a history row 'merge');
2. a fact for a single-valued `slot` (`location.home`) that the user's current fact for
   that slot contradicts -> **supersede**: the old fact gets `valid_to` and
   `superseded_by` (a history row 'supersede' with the reason) and stays readable as
   history; the new fact is added;
3. a fact whose embedding is at least `consolidate_threshold` close to a current fact ->
   **merge**;
4. otherwise -> **add**.

A fact that ends a slot ("I quit my job") closes the current fact (`valid_to`, history row
'end'). Nothing is deleted. The facts, merges, supersessions and the job's end are one
transaction, and the job ends only with the lease it holds: a worker killed mid-job leaves
nothing behind, and the job runs again after its lease runs out, exactly once in effect.
A failed job returns to the queue with exponential backoff (`job_backoff_s`, doubling)
and is `failed` after `job_max_attempts`; `retry_jobs` queues it again.

Every `summary_every_facts` new or changed facts, a `summary` job regenerates the user's
summary (`generate_summary`): extractive by default, by the LLM with `summary_mode=llm`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from memvault import ids, limits
from memvault.errors import (
    ConflictError,
    InvalidArgumentError,
    MemvaultError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
)
from memvault.extract import CATEGORIES, ExtractionError, Extractor, Fact, Known, Turn
from memvault.models import (
    JOB_STATUSES,
    Filters,
    Job,
    JobReport,
    Memory,
    Message,
    NewMemory,
    Summary,
    construct,
)
from memvault.search.text import query_terms
from memvault.service import validate
from memvault.service.memories import build_memory
from memvault.service.people import FACT, FACTS_NAMESPACE, PeopleOps
from memvault.service.search import SearchOps
from memvault.storage.base import Change, JobDone, Merge
from memvault.storage.meta_match import metadata_matches
from memvault.storage.sql.codec import content_hash

log = logging.getLogger("memvault.extraction")

CONTEXT_TURNS = 2  # messages before the extracted one that the extractor sees
KNOWN_FACTS = 8  # current facts shown to an extractor that judges contradictions
SUMMARY_FACTS = 60  # facts an extractive summary considers, most important first
SUMMARY_RECENT = 3  # recent user messages an extractive summary mentions
SUMMARY_ORDER = (
    "identity",
    "location",
    "work",
    "education",
    "family",
    "pets",
    "health",
    "preferences",
    "hobbies",
    "dates",
    "plans",
)


class ExtractOps(SearchOps, PeopleOps):
    """Extraction, consolidation, jobs and summaries. Concrete class: `AsyncMemVault`."""

    _extractors: dict[str, Extractor] | None = None
    _summarizer: Any = None

    # ------------------------------------------------------------------ configuration
    def _extractor(self, name: str) -> Extractor:
        if self._extractors is None:
            self._extractors = {}
        got = self._extractors.get(name)
        if got is None:
            if name == "rules":
                from memvault.extract.rules import RuleExtractor

                got = RuleExtractor()
            elif name == "llm":
                from memvault.extract.llm import EXTRACT_PROMPT, LlmExtractor, load_prompt

                got = LlmExtractor(
                    self._chat_client(),
                    load_prompt(self.settings.extract_prompt_file, EXTRACT_PROMPT),
                )
            else:
                raise InvalidArgumentError(f"unknown extractor {name!r}: rules or llm")
            self._extractors[name] = got
        return got

    def _chat_client(self) -> Any:
        from memvault.extract.llm import ChatClient

        s = self.settings
        if not (s.llm_url and s.llm_model):
            raise ExtractionError(
                "the LLM extractor needs MEMVAULT_LLM_URL and MEMVAULT_LLM_MODEL", retry=False
            )
        return ChatClient(
            s.llm_url,
            model=s.llm_model,
            api_key=s.llm_api_key,
            timeout_s=s.llm_timeout_s,
            retries=s.llm_retries,
            json_mode=s.llm_json_mode,
        )

    def _extractor_for(self, role: str, extract: bool | None) -> str | None:
        configured = self.settings.extractor
        if extract is False:
            return None
        if extract is True:
            return "rules" if configured == "off" else configured
        if configured == "off" or role not in self.settings.extract_role_set:
            return None
        return configured

    # ------------------------------------------------------------------ queueing
    def _new_job(self, user_id: str, kind: str, payload: dict[str, Any], now: datetime) -> Job:
        return construct(
            Job,
            {
                "job_id": ids.new_id("job"),
                "user_id": user_id,
                "kind": kind,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "run_after": now,
                "lease_token": None,
                "lease_until": None,
                "last_error": None,
                "result": None,
                "created_at": now,
                "updated_at": now,
            },
        )

    async def _extraction_jobs(self, message: Message, extract: bool | None) -> list[Job]:
        name = self._extractor_for(message.role, extract)
        if name is None:
            return []
        before = await self.backend.messages(message.user_id, CONTEXT_TURNS, message.session_id)
        payload = {
            "extractor": name,
            "message": _turn_dict(message),
            "context": [_turn_dict(m) for m in before],
        }
        return [self._new_job(message.user_id, "extract", payload, message.created_at)]

    async def remember(
        self,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        session_id: str | None = None,
        wait: bool = False,
    ) -> list[Message]:
        """Add a conversation's messages to the history and queue each one the extractor
        reads (`extract_roles`; the rule extractor when none is configured) for
        extraction. Each item: `role`, `content`, optional `metadata` (`speaker`: who said
        it, by name) and `session_id`. `wait=True` runs this user's due jobs before
        returning (scripts and tests; a server leaves them to its worker).

        Raises:
            InvalidArgumentError: an item is malformed (`details.index` says which).
            PayloadTooLargeError: more than `MAX_REMEMBER` messages.
        """
        uid = validate.user_id(user_id)
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise InvalidArgumentError("messages must be a list of {role, content} objects")
        if not messages:
            raise InvalidArgumentError("messages must not be empty")
        if len(messages) > limits.MAX_REMEMBER_MESSAGES:
            raise PayloadTooLargeError(
                f"remember takes at most {limits.MAX_REMEMBER_MESSAGES} messages, "
                f"got {len(messages)}"
            )
        built: list[tuple[Message, bool]] = []
        for index, item in enumerate(messages):
            try:
                if not isinstance(item, Mapping):
                    raise InvalidArgumentError(
                        "each message must be an object with role and content"
                    )
                unknown = set(item) - {"role", "content", "metadata", "session_id"}
                if unknown:
                    raise InvalidArgumentError(f"unknown message fields {sorted(unknown)}")
                message = self._new_message(
                    uid,
                    item.get("role"),  # type: ignore[arg-type]
                    item.get("content"),  # type: ignore[arg-type]
                    item.get("session_id", session_id),
                    item.get("metadata"),
                )
            except InvalidArgumentError as exc:
                exc.details.setdefault("index", index)
                raise
            built.append((message, message.role in self.settings.extract_role_set))
        stored: list[Message] = []
        queued: list[str] = []
        for m, extract in built:
            message, jobs = await self._store_message(m, extract)
            stored.append(message)
            queued += [j.job_id for j in jobs]
        if wait:
            await self._wait_for(uid, queued)
        return stored

    async def _wait_for(self, uid: str, job_ids: list[str]) -> None:
        """Run this user's due jobs until those of `job_ids` are settled: done, failed, or
        waiting for a retry. A job another worker holds is waited for (polling), up to
        `job_lease_s`."""
        deadline = time.monotonic() + self.settings.job_lease_s
        while True:
            while (await self.run_jobs(user_id=uid)).claimed:
                pass
            now = self.clock.now()
            busy = False
            for job_id in job_ids:
                job = await self.backend.get_job(job_id)
                if job is not None and (
                    job.status == "running" or (job.status == "pending" and job.run_after <= now)
                ):
                    busy = True
                    break
            if not busy or time.monotonic() > deadline:
                return
            await self.offload.run(time.sleep, 0.02)

    # ------------------------------------------------------------------ jobs
    async def run_jobs(
        self,
        *,
        limit: int | None = None,
        user_id: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> JobReport:
        """Lease the due jobs (up to `limit`, default `job_batch`) and run them."""
        uid = None if user_id is None else validate.user_id(user_id)
        n = self.settings.job_batch if limit is None else validate.limit(limit)
        now = self.clock.now()
        claimed = await self.backend.claim_jobs(
            now, self.settings.job_lease_s, n, self.settings.job_max_attempts, kinds, uid
        )
        counts = {"done": 0, "retried": 0, "failed": 0}
        for job in claimed:
            counts[await self._run_job(job)] += 1
        return construct(JobReport, {"claimed": len(claimed), **counts})

    async def _run_job(self, job: Job) -> str:
        assert job.lease_token is not None
        try:
            if job.kind == "extract":
                await self._extract_job(job)
            elif job.kind == "summary":
                await self._summary_job(job)
            else:
                raise ExtractionError(f"unknown job kind {job.kind!r}", retry=False)
            return "done"
        except ExtractionError as exc:
            return await self._give_back(job, str(exc), exc.retry)
        except (
            ConflictError,
            UnavailableError,
        ) as exc:  # a lost lease, a changed row, a busy store
            return await self._give_back(job, f"{exc.code}: {exc}", True)
        except MemvaultError as exc:
            return await self._give_back(job, f"{exc.code}: {exc}", False)
        except Exception as exc:  # a bug: logged, and the job kept for a retry
            log.exception("job %s (%s) failed", job.job_id, job.kind)
            return await self._give_back(job, f"INTERNAL: {type(exc).__name__}: {exc}", True)

    async def _give_back(self, job: Job, error: str, retry: bool) -> str:
        now = self.clock.now()
        last = job.attempts >= self.settings.job_max_attempts
        retry_at = None
        if retry and not last:
            retry_at = now + timedelta(
                seconds=self.settings.job_backoff_s * 2 ** max(0, job.attempts - 1)
            )
        assert job.lease_token is not None
        await self.backend.fail_job(job.job_id, job.lease_token, error, now, retry_at)
        log.warning("job %s (%s) attempt %d: %s", job.job_id, job.kind, job.attempts, error)
        return "retried" if retry_at is not None else "failed"

    async def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[Job]:
        """Jobs, newest first; pass the last `job_id` as `before` for the next page."""
        uid = None if user_id is None else validate.user_id(user_id)
        if status is not None and status not in JOB_STATUSES:
            raise InvalidArgumentError(f"status must be one of {list(JOB_STATUSES)}")
        if before is not None and not ids.is_valid_id(before, "job"):
            raise InvalidArgumentError(f"before must be a job id, got {before!r}")
        return await self.backend.list_jobs(uid, status, validate.limit(limit), before)

    async def get_job(self, job_id: str, *, user_id: str | None = None) -> Job:
        """Raises `NotFoundError` (also for another user's job when `user_id` is given)."""
        if not isinstance(job_id, str) or not ids.is_valid_id(job_id, "job"):
            raise InvalidArgumentError(f"malformed job id {job_id!r}")
        job = await self.backend.get_job(job_id)
        if job is None or (user_id is not None and job.user_id != validate.user_id(user_id)):
            raise NotFoundError(f"no job {job_id!r}", {"job_id": job_id})
        return job

    async def retry_jobs(
        self, job_ids: Sequence[str] | None = None, *, user_id: str | None = None
    ) -> int:
        """Queue failed jobs again (those named, else all failed ones, of `user_id` when
        given); returns how many."""
        uid = None if user_id is None else validate.user_id(user_id)
        if job_ids is not None and (
            isinstance(job_ids, str)
            or not all(isinstance(j, str) and ids.is_valid_id(j, "job") for j in job_ids)
        ):
            raise InvalidArgumentError("job_ids must be a list of job ids")
        n = await self.backend.retry_jobs(job_ids, uid, self.clock.now())
        if n:
            self._jobs_queued()
        return n

    async def job_counts(self, user_id: str | None = None) -> dict[str, int]:
        uid = None if user_id is None else validate.user_id(user_id)
        counts = await self.backend.job_counts(uid)
        return {s: counts.get(s, 0) for s in JOB_STATUSES}

    # ------------------------------------------------------------------ extraction
    async def _extract_job(self, job: Job) -> None:
        payload = job.payload
        try:
            turn = _turn(payload["message"])
            context = [_turn(t) for t in payload.get("context", [])]
            name = payload.get("extractor", "rules")
        except (KeyError, TypeError, ValueError) as exc:
            raise ExtractionError(f"malformed extract job payload: {exc}", retry=False) from exc
        extractor = self._extractor(name)
        now = self.clock.now()
        known: dict[str, Memory] = {}
        if extractor.reads_known:
            known = await self._known_facts(job.user_id, turn, now)
        shown = [
            Known(
                ref,
                m.text,
                m.metadata.get("slot") if isinstance(m.metadata.get("slot"), str) else None,
            )
            for ref, m in known.items()
        ]
        facts = await self.offload.run(extractor.extract, turn, context, shown)
        now = self.clock.now()
        plan = await self._consolidate(job.user_id, facts, turn, f"extractor:{name}", now, known)
        assert job.lease_token is not None
        result = {
            "extractor": name,
            "facts": len(facts),
            "added": [m.memory_id for m in plan.added],
            "merged": plan.merged_ids,
            "superseded": plan.superseded_ids,
            "ended": plan.ended_ids,
        }
        await self.backend.insert_memories(
            plan.added,
            Change("extract", f"extractor:{name}", f"from message {turn.message_id}"),
            now,
            plan.vectors,
            plan.merges,
            job=JobDone(job.job_id, job.lease_token, result),
        )
        if plan.added or plan.superseded_ids or plan.ended_ids:
            await self._maybe_queue_summary(job.user_id, now)

    async def _known_facts(self, uid: str, turn: Turn, now: datetime) -> dict[str, Memory]:
        """The user's current facts (about the same speaker) closest to the message, by
        ref (`F1`, `F2`, ...), for an extractor that judges contradictions."""
        same_speaker = {"speaker": turn.speaker}
        # A store that encrypts metadata cannot filter by it in SQL: take more and match here.
        sealed = self.backend.capabilities.sealed
        about = Filters(
            namespaces=[FACTS_NAMESPACE],
            memory_types=[FACT],
            metadata=None if sealed else same_speaker,
        )
        k = KNOWN_FACTS * 4 if sealed else KNOWN_FACTS
        text = turn.content[: limits.MAX_QUERY_CHARS]
        vec = None
        if await self._vectors_usable():
            got = await self._embed([text])
            vec = None if got is None else got[0]
        if vec is not None:
            found = await self.backend.vector_search(uid, vec, about, k, now)
        elif self.backend.capabilities.lexical:
            found = await self.backend.lexical(uid, query_terms(text), about, k, now)
        else:
            found = []
        pks = [c.pk for c in found]
        rows = await self.backend.hits(uid, pks, now, count_access=False)
        kept = [
            rows[pk]
            for pk in pks
            if pk in rows and (not sealed or metadata_matches(rows[pk].metadata, same_speaker))
        ]
        return {f"F{i + 1}": m for i, m in enumerate(kept[:KNOWN_FACTS])}

    async def _consolidate(
        self,
        uid: str,
        facts: Sequence[Fact],
        turn: Turn,
        actor: str,
        now: datetime,
        known: Mapping[str, Memory] | None = None,
    ) -> _Plan:
        plan = _Plan()
        built: list[tuple[Memory, Fact]] = []
        seen: set[str] = set()
        said = turn.created_at
        source = turn.message_id
        for fact in facts[: limits.MAX_FACTS_PER_MESSAGE]:
            if fact.ends:
                for old in await self._slot_holders(uid, fact.slot, turn.speaker, now):
                    if old.memory_id in plan.touched:
                        continue
                    end = _end_time(old, fact.valid_from or said, now)
                    plan.touched.add(old.memory_id)
                    plan.ended_ids.append(old.memory_id)
                    plan.merges.append(
                        Merge(
                            uid,
                            old.memory_id,
                            functools.partial(_close, end=end, by=None, now=now),
                            Change("end", actor, f"message {source}: {fact.slot} no longer holds"),
                        )
                    )
                continue
            text = fact.text.strip()
            digest = content_hash(text)
            if not text or digest in seen:
                continue
            seen.add(digest)
            same = await self.backend.find_by_hash(uid, FACTS_NAMESPACE, digest, now)
            if same is not None:
                self._plan_merge(plan, uid, same, source, fact, actor, "same text", now)
                continue
            new = build_memory(
                uid,
                NewMemory(
                    content=text,
                    namespace=FACTS_NAMESPACE,
                    memory_type=FACT,
                    category=fact.category if fact.category in CATEGORIES else "general",
                    importance=fact.importance,
                    metadata=_fact_metadata(fact, source, actor, turn.speaker),
                    valid_from=fact.valid_from or said,
                ),
                self.settings,
                now,
            )
            built.append((new, fact))
        vecs = await self._vectors_for([m for m, _ in built], None)
        for i, (new, fact) in enumerate(built):
            vec = None if vecs is None else vecs[i]
            for ref in fact.replaces:  # the extractor judged it untrue now
                replaced = (known or {}).get(ref)
                if replaced is None or replaced.memory_id in plan.touched:
                    continue
                self._plan_supersede(
                    plan,
                    uid,
                    replaced,
                    new,
                    _end_time(replaced, new.valid_from or said, now),
                    actor,
                    f"superseded by {new.memory_id} (the extractor found it contradicted): "
                    f"{_short(replaced.text)!r} -> {_short(new.text)!r}",
                    now,
                )
            if fact.slot is not None:
                holders = [
                    h
                    for h in await self._slot_holders(uid, fact.slot, turn.speaker, now)
                    if h.memory_id not in plan.touched
                ]
                if any(content_hash(h.content) == content_hash(new.content) for h in holders):
                    same = next(
                        h for h in holders if content_hash(h.content) == content_hash(new.content)
                    )
                    self._plan_merge(plan, uid, same, source, fact, actor, "same slot value", now)
                    continue
                for old in holders:
                    self._plan_supersede(
                        plan,
                        uid,
                        old,
                        new,
                        _end_time(old, new.valid_from or said, now),
                        actor,
                        f"superseded by {new.memory_id} ({fact.slot}): "
                        f"{_short(old.text)!r} -> {_short(new.text)!r}",
                        now,
                    )
            elif vec is not None:
                about = Filters(
                    namespaces=[FACTS_NAMESPACE],
                    memory_types=[FACT],
                    metadata={"speaker": turn.speaker},
                )
                near = await self.backend.vector_search(uid, vec, about, 1, now)
                sim = near[0].vector if near else None
                if sim is not None and sim >= self.settings.consolidate_threshold:
                    rows = await self.backend.hits(uid, [near[0].pk], now, count_access=False)
                    close = rows.get(near[0].pk)
                    if close is not None and close.memory_id not in plan.touched:
                        self._plan_merge(
                            plan, uid, close, source, fact, actor, f"cosine {sim:.3f}", now
                        )
                        continue
            plan.added.append(new)
            plan.vectors.append(None if vec is None else vec.tobytes())
        return plan

    def _plan_supersede(
        self,
        plan: _Plan,
        uid: str,
        old: Memory,
        new: Memory,
        end: datetime,
        actor: str,
        reason: str,
        now: datetime,
    ) -> None:
        plan.touched.add(old.memory_id)
        plan.superseded_ids.append(old.memory_id)
        plan.merges.append(
            Merge(
                uid,
                old.memory_id,
                functools.partial(_close, end=end, by=new.memory_id, now=now),
                Change("supersede", actor, reason),
            )
        )

    def _plan_merge(
        self,
        plan: _Plan,
        uid: str,
        into: Memory,
        source: str | None,
        fact: Fact,
        actor: str,
        why: str,
        now: datetime,
    ) -> None:
        if into.memory_id in plan.touched:
            return
        plan.touched.add(into.memory_id)
        plan.merged_ids.append(into.memory_id)
        plan.merges.append(
            Merge(
                uid,
                into.memory_id,
                functools.partial(_add_source, source=source, importance=fact.importance, now=now),
                Change("merge", actor, f"message {source} repeats it ({why})"),
            )
        )

    async def _slot_holders(
        self, uid: str, slot: str | None, speaker: str | None, now: datetime
    ) -> list[Memory]:
        """The user's current facts for `slot`, about the same person (a conversation of
        several named speakers keeps one home, one job ... for each of them)."""
        if slot is None:
            return []
        items, _ = await self.backend.query(
            uid,
            Filters(
                namespaces=[FACTS_NAMESPACE],
                memory_types=[FACT],
                metadata={"slot": slot, "speaker": speaker},
            ),
            "created_asc",
            None,
            limits.MAX_PAGE_LIMIT,
            now,
        )
        return items

    # ------------------------------------------------------------------ summaries
    async def _maybe_queue_summary(self, uid: str, now: datetime) -> None:
        every = self.settings.summary_every_facts
        if not every:
            return
        summary = await self.backend.get_summary(uid)
        # Changed strictly after the summary was written (the filter is inclusive).
        since = None if summary is None else summary.updated_at + timedelta(microseconds=1)
        changed, _ = await self.backend.query(
            uid,
            Filters(memory_types=[FACT], updated_after=since, include_superseded=True),
            "created_desc",
            None,
            every,
            now,
        )
        if len(changed) < every:
            return
        pending = await self.backend.list_jobs(uid, "pending", 50)
        if any(j.kind == "summary" for j in pending):
            return
        await self.backend.enqueue_jobs([self._new_job(uid, "summary", {}, now)])
        self._jobs_queued()

    async def _summary_job(self, job: Job) -> None:
        summary = await self.generate_summary(job.user_id)
        assert job.lease_token is not None
        done = JobDone(job.job_id, job.lease_token, {"chars": len(summary.content)})
        if not await self.backend.complete_job(done, self.clock.now()):
            raise ConflictError(f"job {job.job_id!r} is no longer leased by this worker")

    async def generate_summary(self, user_id: str, *, mode: str | None = None) -> Summary:
        """Build the user's one summary from their most important current facts and recent
        messages and store it (seed 003's upsert). `mode`: `extractive` (default setting
        `summary_mode`) or `llm`.

        Raises:
            NotFoundError: the user has no facts, memories or messages to summarise.
            UnavailableError: the LLM endpoint cannot answer now.
        """
        uid = validate.user_id(user_id)
        how = self.settings.summary_mode if mode is None else mode
        if how not in ("extractive", "llm"):
            raise InvalidArgumentError(f"mode must be 'extractive' or 'llm', got {mode!r}")
        now = self.clock.now()
        facts, _ = await self.backend.query(
            uid,
            Filters(memory_types=[FACT, "preference", "permanent"]),
            "importance_desc",
            None,
            SUMMARY_FACTS,
            now,
        )
        recent = [
            m.content
            for m in await self.backend.messages(uid, 4 * SUMMARY_RECENT, None)
            if m.role == "user"
        ][-SUMMARY_RECENT:]
        if not facts and not recent:
            raise NotFoundError(f"user {uid!r} has no facts or messages to summarise")
        user = await self.backend.get_user(uid)
        speaker = (user.username if user is not None else None) or "the user"
        if how == "llm":
            text = await self._llm_summary(facts, recent, speaker)
        else:
            text = extractive_summary(facts, recent, self.settings.summary_max_chars)
        return await self.save_summary(uid, text[: limits.MAX_CONTENT_CHARS])

    async def _llm_summary(self, facts: list[Memory], recent: list[str], speaker: str) -> str:
        from memvault.extract.llm import SUMMARY_PROMPT, LlmSummarizer, load_prompt

        if self._summarizer is None:
            self._summarizer = LlmSummarizer(
                self._chat_client(), load_prompt(self.settings.summary_prompt_file, SUMMARY_PROMPT)
            )
        try:
            text: str = await self.offload.run(
                self._summarizer.summarize, [m.text for m in facts], recent, speaker
            )
        except ExtractionError as exc:
            raise UnavailableError(f"the summary model cannot answer now: {exc}") from exc
        return text[: self.settings.summary_max_chars]


class _Plan:
    """What one extract job writes."""

    def __init__(self) -> None:
        self.added: list[Memory] = []
        self.vectors: list[bytes | None] = []
        self.merges: list[Merge] = []
        self.merged_ids: list[str] = []
        self.superseded_ids: list[str] = []
        self.ended_ids: list[str] = []
        self.touched: set[str] = set()


def extractive_summary(facts: Sequence[Memory], recent: Sequence[str], max_chars: int) -> str:
    """Facts grouped by category (in `SUMMARY_ORDER`, most important first within each),
    then what the user talked about lately, cut to `max_chars` at a sentence."""
    groups: dict[str, list[str]] = {}
    for m in facts:
        groups.setdefault(m.category or "general", []).append(_sentence(m.text))
    order = [c for c in SUMMARY_ORDER if c in groups] + sorted(
        c for c in groups if c not in SUMMARY_ORDER
    )
    parts = [f"{c.capitalize()}: {' '.join(groups[c])}" for c in order]
    if recent:
        said = "; ".join(_short(" ".join(r.split()), 120).rstrip(".;") for r in recent)
        parts.append(f"Recently said: {said}")
    out = ""
    for part in parts:
        if len(out) + len(part) + 1 > max_chars:
            break
        out = f"{out}\n{part}" if out else part
    return out or parts[0][:max_chars]


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _turn_dict(m: Message) -> dict[str, Any]:
    speaker = m.metadata.get("speaker")
    return {
        "message_id": m.message_id,
        "role": m.role,
        "content": m.content,
        "created_at": m.created_at.isoformat(),
        "speaker": speaker if isinstance(speaker, str) else None,
    }


def _turn(d: Mapping[str, Any]) -> Turn:
    return Turn(
        role=d["role"],
        content=d["content"],
        created_at=datetime.fromisoformat(d["created_at"]),
        message_id=d.get("message_id"),
        speaker=d.get("speaker"),
    )


def _fact_metadata(
    fact: Fact, source: str | None, actor: str, speaker: str | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"extractor": actor.removeprefix("extractor:")}
    if source is not None:
        meta["sources"] = [source]
    if fact.slot is not None:
        meta["slot"] = fact.slot
    if speaker is not None:
        meta["speaker"] = speaker
    return meta


def _end_time(old: Memory, wanted: datetime, now: datetime) -> datetime:
    """When `old` stops holding: `wanted`, unless that is not after it began."""
    start = old.valid_from or old.created_at
    if wanted > start:
        return wanted
    return now if now > start else start + timedelta(microseconds=1)


def _close(cur: Memory, *, end: datetime, by: str | None, now: datetime) -> Memory:
    return cur.model_copy(
        update={
            "valid_to": end,
            "superseded_by": by,
            "version": cur.version + 1,
            "updated_at": now,
        }
    )


def _add_source(
    cur: Memory, *, source: str | None, importance: float | None, now: datetime
) -> Memory:
    sources = cur.metadata.get("sources")
    kept = [s for s in sources if isinstance(s, str)] if isinstance(sources, list) else []
    if source is not None and source not in kept:
        kept.append(source)
    meta = {**cur.metadata, "sources": kept[-limits.MAX_FACT_SOURCES :]}
    return cur.model_copy(
        update={
            "metadata": meta,
            "importance": max(cur.importance, importance or 0.0),
            "version": cur.version + 1,
            "updated_at": now,
        }
    )


__all__ = ["ExtractOps", "extractive_summary"]
