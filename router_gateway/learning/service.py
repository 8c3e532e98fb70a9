"""The learning loop inside a running gateway: shadow answers after the client's, grades, labels,
retrain, gate, promote by hot swap, and the same promotion on every replica.

Request path: ``offer`` (called when a request's log record is written) only checks the profile,
a hash of the request id against ``shadow.sample``, the budget and the queue, then enqueues; it never
awaits. Everything else runs in ``shadow.concurrency`` background workers: embed the prompt, plan
(learning.policy), reserve the budget, call the planned experts through the forwarder (each call
logged and priced like a request, profile ``learning:shadow``; judge calls ``learning:judge``),
grade, store the labels, and retrain when due. If the gateway stops, queued shadow work is dropped:
the client's answer and its log record were written before the job existed.

Promotion: the loop writes the candidate to ``promote.artifacts/vNNNN`` and updates
``current.json``; the gateway then rebuilds its runtime with the profile pointing at that artifact
(router ``learned:<profile>``), exactly like a config reload. With Redis, a retrain holds the lock
``<prefix>learning:lock`` (one replica retrains at a time) and the pointer is published under
``<prefix>learning:pointer``; every replica polls it and swaps too. Label rows reach the replica that
retrains through a Redis stream (learning.replicas). With ``promote.canary.share``, an automatic
promotion first puts the candidate on trial for that share of the requests (router
``learned-canary:<profile>``) and the canary check on realised grades decides (learning.canary).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import orjson

from router_gateway.domain.config import GatewayConfig, ProfileCanary, RouterSpec
from router_gateway.domain.record import RequestRecord
from router_gateway.learning.background import BackgroundWorker
from router_gateway.learning.budget import ShadowBudget
from router_gateway.learning.canary import CanaryCheck
from router_gateway.learning.day_cap import SharedDayCap
from router_gateway.learning.graders import Grade, ReferenceGrader
from router_gateway.learning.judge import ABSOLUTE_OVERHEAD_TOKENS, JudgeGrader
from router_gateway.learning.loop import LearningLoop
from router_gateway.learning.policy import ShadowPolicy
from router_gateway.learning.promote import ArtifactPromoter, read_pointer
from router_gateway.learning.regrade import (
    combine,
    predicted_grades,
    settled,
    surprising,
)
from router_gateway.learning.replicas import LabelStream, encode_row
from router_gateway.learning.store import LabelStore
from router_gateway.routing.router_set import score_experts
from router_gateway.state.request_log import prompt_digest
from router_gateway.task_stop import cancellation_pending, stop_tasks
from routers.policy import unit_hash

log = logging.getLogger("router_gateway.learning")
LOCK_TTL_S = 600
#: shadow work waits while client requests are in flight: polled this often, at most YIELD_MAX_S per step
YIELD_POLL_S = 0.002
YIELD_MAX_S = 2.0


class ConfiguredRouter:
    """The profile's configured router (what runs when nothing is promoted), as a Router for the gate."""

    def __init__(self, loaded, config: GatewayConfig):
        self.loaded, self.config = loaded, config

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        return np.stack([score_experts(self.loaded, x, self.config) for x in np.atleast_2d(X)])


def learned_router_name(profile: str) -> str:
    return f"learned:{profile}"


def canary_router_name(profile: str) -> str:
    return f"learned-canary:{profile}"


def overlay(config: GatewayConfig, profile: str, configured_router: str, artifact: str | None,
            router_type: str, canary: str | None = None, canary_share: float = 0.0) -> GatewayConfig:
    """``config`` with the profile on the promoted artifact (or back on its configured router), and
    the canary artifact on trial for ``canary_share`` of its requests."""
    name, trial = learned_router_name(profile), canary_router_name(profile)
    routers = {k: v for k, v in config.routers.items() if k not in (name, trial)}
    target = configured_router
    if artifact:
        routers[name] = RouterSpec(type=router_type, artifact=artifact)
        target = name
    update: dict[str, Any] = {"router": target, "canary": None}
    if canary and canary_share > 0:
        routers[trial] = RouterSpec(type=router_type, artifact=canary)
        update["canary"] = ProfileCanary(router=trial, share=canary_share)
    profiles = dict(config.profiles)
    profiles[profile] = profiles[profile].model_copy(update=update)
    return config.model_copy(update={"routers": routers, "profiles": profiles})


class LearningService:
    """See module doc. Built by the gateway when experts.yaml has a ``learning:`` section."""

    def __init__(self, gateway, config: GatewayConfig):
        self.gateway = gateway
        self.settings = config.learning
        s = self.settings
        self.experts = list(config.experts)
        self.configured_router = config.profiles[s.profile].router
        prices = np.array([e.price.input_per_mtok + e.price.output_per_mtok for e in config.experts.values()])
        self.norm_cost = prices / max(prices.max(), 1e-12)
        allowed = np.array([not s.shadow.experts or e in s.shadow.experts for e in self.experts])
        self.policy = ShadowPolicy(len(self.experts), self.norm_cost, s.shadow.policy, s.shadow.max_experts, allowed,
                                   explore=s.shadow.explore)
        self.budget = ShadowBudget(s.shadow.max_share, s.shadow.usd_per_day)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=s.shadow.queue)
        self.store: LabelStore | None = None
        self.loop: LearningLoop | None = None
        self.promoter: ArtifactPromoter | None = None
        self.graders: list = []
        self.stats = {"offered": 0, "queued": 0, "dropped_queue_full": 0, "shadowed": 0, "skipped": 0,
                      "failed": 0, "ungraded": 0, "shadow_calls": 0, "judge_calls": 0, "retrains": 0,
                      "yields": 0, "yield_timeouts": 0, "labels_from_replicas": 0, "share_failed": 0}
        self._own_runtimes: list = []  # runtimes held by shadow and judge calls (not client requests)
        self._tasks: list[asyncio.Task] = []
        self.work = BackgroundWorker()  # label writes, in a low-priority thread
        self.trainer = BackgroundWorker("learning-train")  # retrains: their own, so writes never wait on one
        self._retrain_lock = asyncio.Lock()
        self.canary = CanaryCheck(s.promote.canary.min_graded, s.promote.canary.z)
        self.cost_weight = config.profiles[s.profile].cost_weight
        self._ending_canary = False
        self.label_stream: LabelStream | None = None  # with Redis: labels of every replica (learning.replicas)
        self.day_cap: SharedDayCap | None = None  # with Redis: usd_per_day for all replicas (learning.day_cap)
        self._swaps: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        g, s = self.gateway, self.settings
        config = g.runtime.config
        self._event_loop = asyncio.get_running_loop()
        self.store = await asyncio.to_thread(LabelStore, config.logging.path, config.logging.store_prompts,
                                             s.shadow.store_answers)
        spent = await asyncio.to_thread(self.store.spend)
        today = await asyncio.to_thread(self.store.spend, self.budget.day or None)
        self.budget.live_usd, self.budget.shadow_usd = spent["live_usd"], spent["shadow_usd"]
        self._live_saved = self.budget.live_usd
        self.budget._roll()
        self.budget.day_usd = today["shadow_usd"] if self.budget.day else 0.0
        info = g.embedder.info
        baseline = ConfiguredRouter(g.runtime.routing.routers[self.configured_router], config)
        self.promoter = ArtifactPromoter(s.promote.artifacts, self.experts,
                                         {"name": info.name, "dim": info.dim, "backend": info.backend},
                                         baseline, on_swap=self._swap_soon)
        cost_weight = config.profiles[s.profile].cost_weight
        self.loop = LearningLoop(s, self.store, self.experts, self.norm_cost, cost_weight, self.promoter)
        self.loop.total_labels = (await asyncio.to_thread(self.store.counts))["prompts"]
        await asyncio.to_thread(self.loop.restore_live_trained)
        self.graders = self._make_graders()
        shared = g.shared
        if shared is not None and shared.enabled and s.replicas.share_labels:
            self.label_stream = LabelStream(self._redis, shared.prefix, shared.replica, s.replicas.stream_max_rows)
        if shared is not None and shared.enabled:
            self.day_cap = SharedDayCap(self._redis, shared.prefix, s.shadow.usd_per_day)
        if self.promoter.pointer.get("current"):
            await self.apply(self.promoter.pointer.get("current"))
        for i in range(s.shadow.concurrency):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"shadow-{i}"))
        self._tasks.append(asyncio.create_task(self._follow_loop(), name="learning-follow"))

    async def close(self) -> None:
        await stop_tasks([*self._tasks, *self._swaps], "learning")
        self.work.close()
        self.trainer.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    async def _reserve(self, usd: float) -> str | None:
        """Reserve on this replica's budget and, with Redis, on every replica's day cap. None when
        refused; else the day the shared cap booked it on ('' without Redis), for ``_settle``."""
        if not self.budget.reserve(usd):
            return None
        if self.day_cap is None:
            return ""
        day = await self.day_cap.reserve(usd)
        if day is not None and not cancellation_pending():
            return day
        self.budget.settle(usd, 0.0)
        self.budget.dropped += 1
        if day is not None:  # redis-py answered with our cancellation swallowed: honour it
            await self.day_cap.settle(day, usd, 0.0)
            raise asyncio.CancelledError
        return None

    async def _settle(self, day: str, reserved: float, spent: float) -> None:
        self.budget.settle(reserved, spent)
        if self.day_cap is not None and day:
            await self.day_cap.settle(day, reserved, spent)

    def _make_graders(self) -> list:
        s = self.settings.grader
        graders = []
        if "reference" in s.kinds and s.reference is not None:
            graders.append(ReferenceGrader.from_csv(s.reference.path, s.reference.match))
        if "judge" in s.kinds and s.judge is not None:
            graders.append(JudgeGrader(self._ask_judge, s.judge.expert, s.judge.mode, s.judge.reference_expert,
                                       s.judge.max_tokens))
        return graders  # "feedback" is merged by the label store when the training set is built

    # -- request path ----------------------------------------------------------------------
    def offer(self, record: RequestRecord, body: dict[str, Any], answer: bytes | None) -> None:
        """Called with every finished request's record; must stay cheap (no await, no I/O)."""
        if record.profile != self.settings.profile or record.status != 200:
            return
        self.budget.add_live(record.cost_usd or 0.0)
        self.stats["offered"] += 1
        if unit_hash(record.request_id, "shadow") >= self.settings.shadow.sample or self.budget.available() <= 0:
            return
        try:
            self.queue.put_nowait((record, body, answer))
            self.stats["queued"] += 1
        except asyncio.QueueFull:
            self.stats["dropped_queue_full"] += 1

    # -- background ------------------------------------------------------------------------
    def clients_in_flight(self) -> int:
        """Client requests in flight: at the HTTP layer until their answer is sent (app.py counts them),
        or on the current runtime (ChatService called directly), not counting this service's own calls."""
        runtime = self.gateway.runtime
        on_runtime = 0 if runtime is None else runtime.active - sum(1 for r in self._own_runtimes if r is runtime)
        return max(0, on_runtime, getattr(self.gateway, "clients_in_flight", 0))

    async def yield_to_clients(self) -> None:
        """Wait until no client request has been in flight for ``YIELD_POLL_S`` (at most ``YIELD_MAX_S``).

        Shadow work shares the gateway's event loop: every slice of it (an expert call's request
        building and parsing, the judge prompt, the log record) that runs while a client request
        awaits delays that request's next step. Called before each step of a shadow job, this makes
        the loop serve clients first, so a shadowed request's client pays only ``offer``. Under
        back-to-back traffic a step proceeds after ``YIELD_MAX_S``: shadow work is late, never starved."""
        start = time.monotonic()
        quiet_since = None
        while True:
            now = time.monotonic()
            if self.clients_in_flight() > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            if quiet_since is not None and now - quiet_since >= YIELD_POLL_S:
                return  # quiet for a whole poll: not just the instant between two back-to-back requests
            if now - start >= YIELD_MAX_S:
                self.stats["yield_timeouts"] += 1
                return
            if quiet_since is None:
                self.stats["yields"] += 1
            await asyncio.sleep(YIELD_POLL_S)

    async def _worker(self) -> None:
        while True:
            record, body, answer = await self.queue.get()
            try:
                await self.shadow(record, body, answer)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad job must not stop the worker
                self.stats["failed"] += 1
                log.exception("shadow job for %s failed", record.request_id)
            finally:
                self.queue.task_done()  # queue.join() waits for the backlog (benchmarks, tests)

    async def shadow(self, record: RequestRecord, body: dict[str, Any], answer: bytes | None) -> bool:
        """Plan, call, grade and store one shadowed request; False when it was not worth (or not
        affordable) to shadow."""
        g = self.gateway
        prompt, live_name = record.prompt, record.chosen_expert
        if not prompt or live_name not in self.experts:
            return False
        await self.yield_to_clients()
        x = await g.embedder.embed_one(prompt)
        live = self.experts.index(live_name)
        value, local = (self.policy.assess(self.loop.candidate, x) if self.policy.mode == "value" else (None, None))
        plan = self.policy.plan(live, value, local)
        judge = self.settings.grader.judge
        if plan and judge is not None and judge.mode == "pairwise":  # answers are compared with its answer
            ref = self.experts.index(judge.reference_expert)
            plan = sorted(set(plan) | {ref})
        if not plan and self._canary_arm(record) is not None:
            plan = [live]  # grade the live answer: the canary check compares the arms' realised grades
        if not plan:
            self.stats["skipped"] += 1
            return False
        estimate = self._estimate(record, plan, live)
        day = await self._reserve(estimate)
        if day is None:
            self.policy.budget_feedback(refused=True, plenty=False)
            self.stats["skipped"] += 1
            return False
        self.policy.budget_feedback(False, self.budget.available() > 3 * estimate)
        spent = 0.0
        try:
            answers, costs = {}, {}
            live_text = _answer_text(answer)
            if live_text is not None:
                answers[live_name], costs[live_name] = live_text, 0.0
            for j in plan:
                name = self.experts[j]
                if name not in answers:
                    answers[name], costs[name] = await self._ask_shadow(name, body)
            spent = sum(costs.values())
            grades, grading_cost = await self._grade(prompt, answers)
            spent += grading_cost
            grades, regrading_cost = await self._regrade(prompt, answers, grades, x)
            spent += regrading_cost
            if not grades:  # nothing graded (unreadable verdicts): the spend counts, no label row
                self.stats["ungraded"] += 1
                return False
            await self.yield_to_clients()
            await self.work.run(self.store.add, prompt_digest(prompt), x, grades.values(),
                                answer_costs=costs, request_id=record.request_id, live_expert=live_name,
                                prompt=prompt, answers=answers)
            await self._share_labels(prompt, x, grades.values(), costs, record.request_id, live_name)
        finally:
            await self._settle(day, estimate, spent)
            live, self._live_saved = self.budget.live_usd - self._live_saved, self.budget.live_usd
            await self.work.run(self.store.add_spend, spent, live)  # both survive a restart
        self.policy.observe({self.experts.index(e): gr.score for e, gr in grades.items()})
        await self._observe_canary(record, grades.get(live_name))
        self.stats["shadowed"] += 1
        if grades:
            self.loop.labels_added(1)
        if self.loop.due():
            await self.retrain(when_due=True)
        return True

    async def _share_labels(self, prompt: str, x, grades, costs: dict[str, float], request_id: str,
                            live_name: str) -> None:
        """Append the row to the replicas' stream; on failure it stays in this replica's store only."""
        if self.label_stream is None:
            return
        store_prompts = self.gateway.runtime.config.logging.store_prompts
        row = encode_row(prompt_digest(prompt), x, grades, costs, replica=self.label_stream.replica,
                         request_id=request_id, live_expert=live_name, prompt=prompt if store_prompts else None,
                         ts=time.time())
        try:
            if not await self.label_stream.publish(row):
                self.stats["share_failed"] += 1
        except Exception as exc:  # noqa: BLE001 - Redis down: the label stays here, the others miss it
            self.stats["share_failed"] += 1
            log.warning("learning: could not share a label row: %s", exc)

    async def ingest_shared(self) -> int:
        """Other replicas' new label rows into this replica's store; returns the new prompts."""
        if self.label_stream is None:
            return 0
        rows = await self.label_stream.read_new()
        if not rows:
            return 0
        new = await self.work.run(self._ingest_rows, rows)
        self.loop.labels_added(new)
        self.stats["labels_from_replicas"] += new
        return new

    def _ingest_rows(self, rows: list[dict[str, Any]]) -> int:
        return sum(self.store.ingest(**{k: v for k, v in row.items() if k != "replica"})[0] for row in rows)

    async def _follow_retrains(self) -> None:
        """A retrain another replica just made counts here too: no second retrain on the same labels."""
        marker = await self.label_stream.last_retrain() if self.label_stream else None
        if marker and marker.get("replica") != self.label_stream.replica and marker["ts"] > self.loop.last_retrain:
            self.loop.last_retrain = float(marker["ts"])
            self.loop.new_labels = max(0, self.loop.total_labels - int(marker["labels"]))

    def _canary_arm(self, record: RequestRecord) -> str | None:
        """"canary" or "live" for a request decided while a canary runs; None otherwise."""
        if not self.promoter.canary:
            return None
        return "canary" if record.router == canary_router_name(self.settings.profile) else "live"

    async def _observe_canary(self, record: RequestRecord, grade: Grade | None) -> None:
        """Add the live answer's realised utility to its arm; end the canary once the check decides."""
        arm = self._canary_arm(record)
        if arm is None or grade is None:
            return
        expert = self.experts.index(record.chosen_expert)
        self.canary.observe(arm, grade.score - self.cost_weight * self.norm_cost[expert], self.promoter.canary)
        verdict = self.canary.verdict()
        if verdict is not None and not self._ending_canary:
            await self.end_canary(verdict.passed, {"check": verdict.as_dict()})

    async def end_canary(self, promote: bool, why: dict[str, Any]) -> str | None:
        """Make the canary live or drop it (the check decided, or a revert); returns what is live."""
        path = self.promoter.canary
        if path is None or self._ending_canary:
            return self.promoter.pointer.get("current")
        self._ending_canary = True  # another worker's grade may decide at the same time
        try:
            live = await self.work.run(self.promoter.end_canary, promote)
            self.loop.canary_ended(promote)
            self.canary.reset()
        finally:
            self._ending_canary = False
        await self.work.run(self.store.add_event, "promotion" if promote else "canary_stopped",
                            {"artifact": path, "via": "canary", **why})
        await self._publish_pointer()
        return live

    def _estimate(self, record: RequestRecord, plan: list[int], live: int) -> float:
        config = self.gateway.runtime.config
        prompt_tokens = record.prompt_tokens or 256
        out_tokens = self.settings.shadow.max_tokens
        cost = sum(config.experts[self.experts[j]].price.cost(prompt_tokens, out_tokens) for j in plan if j != live)
        judge = self.settings.grader.judge
        if judge is not None and "judge" in self.settings.grader.kinds:
            calls = len(plan) * (2 if judge.mode == "pairwise" else 1)
            per = config.experts[judge.expert].price.cost(prompt_tokens + out_tokens + ABSOLUTE_OVERHEAD_TOKENS,
                                                         judge.max_tokens)
            cost += calls * per
        return cost

    async def _grade(self, prompt: str, answers: dict[str, str | None]) -> tuple[dict[str, Grade], float]:
        """The first grader that grades an answer wins (in the configured order); returns the grades
        and what grading cost, unreadable judge verdicts included."""
        out: dict[str, Grade] = {}
        cost = 0.0
        for grader in self.graders:
            todo = {e: a for e, a in answers.items() if e not in out}
            if not todo:
                continue
            grades, spent = await grader.grade_with_cost(prompt, todo)
            out.update(grades)
            cost += spent
        return out, cost

    async def _regrade(self, prompt: str, answers: dict[str, str | None], grades: dict[str, Grade],
                       x: np.ndarray) -> tuple[dict[str, Grade], float]:
        """Ask the judge again (up to ``regrade`` more calls, until two agree) where its grade surprises
        the candidate, keep the median (learning.regrade); the extra calls are reserved in the shadow
        budget first and counted."""
        settings = self.settings.grader.judge
        judge = next((gr for gr in self.graders if isinstance(gr, JudgeGrader)), None)
        if settings is None or settings.regrade == 0 or judge is None:
            return grades, 0.0
        by_index = {self.experts.index(e): gr.score for e, gr in grades.items()
                    if gr.grader == judge.name and answers.get(e) is not None}
        expected = predicted_grades(self.loop.candidate, x, self.policy.sums, self.policy.counts)
        out, spent = dict(grades), 0.0
        for j in surprising(expected, by_index, settings.surprise):
            first = grades[self.experts[j]]
            reserve = settings.regrade * first.cost_usd
            day = await self._reserve(reserve)
            if day is None:
                break
            calls, cost = [first.score], first.cost_usd
            for _ in range(settings.regrade):  # again, while the calls disagree
                if settled(calls):
                    break
                again, paid = await judge.grade_with_cost(prompt, {first.expert: answers[first.expert]})
                cost, spent = cost + paid, spent + paid
                if first.expert in again:
                    calls.append(again[first.expert].score)
            await self._settle(day, reserve, 0.0)  # what was paid is settled with the job's spend
            self.stats["regraded"] = self.stats.get("regraded", 0) + 1
            out[first.expert] = Grade(first.expert, combine(calls), judge.name, cost,
                                      f"median of {len(calls)} judge calls")
        return out, spent

    async def _call(self, expert: str, body: dict[str, Any], profile: str) -> tuple[str | None, float]:
        """One non-streamed call to one expert (no fallbacks), logged and priced like a request."""
        await self.yield_to_clients()
        runtime = self.gateway.acquire()
        self._own_runtimes.append(runtime)
        started, status, text, usage, error = time.perf_counter(), 200, None, {}, None
        try:
            deadline = time.monotonic() + runtime.config.experts[expert].timeout.total
            result = await runtime.forwarder.forward([expert], {**body, "model": expert, "stream": False}, False,
                                                     deadline)
            usage = result.usage or {}
            text = _answer_text(result.body)
        except Exception as exc:  # a failed shadow call is graded as no answer, never raised
            status, error = getattr(exc, "status", 502), str(exc)
        finally:
            self._own_runtimes.remove(runtime)
            self.gateway.release(runtime)
        prompt_t, completion_t = usage.get("prompt_tokens"), usage.get("completion_tokens")
        cost = (runtime.config.experts[expert].price.cost(prompt_t, completion_t)
                if isinstance(prompt_t, int) and isinstance(completion_t, int) else 0.0)
        rid = f"{profile.replace(':', '-')}-{int(time.time() * 1e6):x}"
        self.gateway.request_log.record(RequestRecord(
            request_id=rid, ts=time.time(), model=expert, profile=profile, chosen_expert=expert, status=status,
            error=error, latency_ms=round((time.perf_counter() - started) * 1e3, 3),
            prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
            cost_usd=cost))
        return text, cost

    async def _ask_shadow(self, expert: str, body: dict[str, Any]) -> tuple[str | None, float]:
        self.stats["shadow_calls"] += 1
        keep = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "n")}
        keep["max_tokens"] = min(int(body.get("max_tokens") or self.settings.shadow.max_tokens),
                                 self.settings.shadow.max_tokens)
        keep.pop("max_completion_tokens", None)
        return await self._call(expert, keep, "learning:shadow")

    async def _ask_judge(self, judge: str, text: str, max_tokens: int) -> tuple[str | None, float]:
        self.stats["judge_calls"] += 1
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 0}
        return await self._call(judge, body, "learning:judge")

    # -- retrain, promote, follow ----------------------------------------------------------
    async def retrain(self, promote: bool | None = None, when_due: bool = False) -> dict[str, Any]:
        """Retrain now (one replica at a time) on every replica's labels; returns the outcome.
        ``when_due``: only if still due once the other replicas' labels and retrains are counted."""
        async with self._retrain_lock:
            token = await self._acquire_shared_lock()
            if token is False:
                return {"skipped": "another replica is retraining"}
            try:
                await self.ingest_shared()
                await self._follow_retrains()
                if when_due and not self.loop.due():
                    return {"skipped": "another replica retrained on these labels"}
                self.stats["retrains"] += 1
                outcome = await self.trainer.run(self.loop.retrain, promote)
                if self.label_stream is not None:
                    await self.label_stream.mark_retrained(self.loop.total_labels, self.loop.last_retrain)
            finally:
                await self._release_shared_lock(token)
            if outcome.promoted:
                await self._publish_pointer()
            return outcome.as_dict()

    async def revert(self) -> str | None:
        if self.promoter.canary:  # a canary on trial: revert stops it, the live router stays
            return await self.end_canary(False, {"by": "revert"})
        previous = await asyncio.to_thread(self.promoter.revert)
        await asyncio.to_thread(self.store.add_event, "revert", {"artifact": previous})
        await self._publish_pointer()
        return previous

    def _swap_soon(self, artifact: str | None) -> None:
        """The promoter runs in a worker thread: schedule the swap on the gateway's event loop."""
        self._event_loop.call_soon_threadsafe(self._spawn_apply, artifact)

    def _spawn_apply(self, artifact: str | None) -> None:
        task = asyncio.get_running_loop().create_task(self.apply(artifact))
        self._swaps.add(task)
        task.add_done_callback(self._swaps.discard)

    async def apply(self, artifact: str | None) -> None:
        """Hot-swap the gateway onto ``artifact`` (None: the configured router)."""
        s = self.settings
        canary = self.promoter.canary if self.promoter else None
        ok, message = await self.gateway.swap_config(
            lambda config: overlay(config, s.profile, self.configured_router, artifact, s.retrain.router,
                                   canary, s.promote.canary.share))
        log.info("learning: profile %s now on %s (%s)", s.profile, artifact or self.configured_router, message)

    def on_reload(self, config: GatewayConfig) -> GatewayConfig:
        """A config reload keeps the promoted router."""
        self.configured_router = config.profiles[self.settings.profile].router
        current = self.promoter.pointer.get("current") if self.promoter else None
        canary = self.promoter.canary if self.promoter else None
        s = self.settings
        return overlay(config, s.profile, self.configured_router, current, s.retrain.router, canary,
                       s.promote.canary.share)

    def _redis(self):
        shared = self.gateway.shared
        return shared.client() if shared is not None and shared.enabled else None

    async def _acquire_shared_lock(self):
        redis = self._redis()
        if redis is None:
            return None
        token = f"{self.gateway.shared.replica}-{time.time()}"
        got = await redis.set(self.gateway.shared.prefix + "learning:lock", token, nx=True, ex=LOCK_TTL_S)
        return token if got else False

    async def _release_shared_lock(self, token) -> None:
        redis = self._redis()
        if redis is None or not token:
            return
        key = self.gateway.shared.prefix + "learning:lock"
        if await redis.get(key) in (token, token.encode()):
            await redis.delete(key)

    async def _publish_pointer(self) -> None:
        redis = self._redis()
        if redis is not None:
            await redis.set(self.gateway.shared.prefix + "learning:pointer", orjson.dumps(self.promoter.pointer))

    async def _follow_loop(self, interval_s: float = 2.0) -> None:
        """Adopt promotions and reverts made by other replicas (Redis), or by the CLI (the file)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                redis = self._redis()
                raw = await redis.get(self.gateway.shared.prefix + "learning:pointer") if redis else None
                pointer = orjson.loads(raw) if raw else read_pointer(self.settings.promote.artifacts)
                await self.work.run(self.promoter.adopt, pointer)
                if self.label_stream is not None:
                    await self.ingest_shared()
                    await self._follow_retrains()
                    if self.loop.due():
                        await self.retrain(when_due=True)
            except Exception as exc:  # keep serving on what is live
                log.warning("learning: could not follow promotions: %s", exc)

    # -- status ----------------------------------------------------------------------------
    def _canary_status(self) -> dict[str, Any] | None:
        if not self.promoter or not self.promoter.canary:
            return None
        return {"artifact": self.promoter.canary, "share": self.settings.promote.canary.share,
                "graded": {arm: len(u) for arm, u in self.canary.utilities.items()},
                "min_graded": self.canary.min_graded}

    def brief(self) -> dict[str, Any]:
        """In-memory summary for the live view (no I/O: it is polled)."""
        last = self.loop.last_outcome if self.loop else None
        return {"profile": self.settings.profile, "labelled_prompts": self.loop.total_labels if self.loop else 0,
                "shadow_usd": round(self.budget.shadow_usd, 8), "live_usd": round(self.budget.live_usd, 8),
                "share": self.budget.share(), "stats": dict(self.stats),
                "live": (self.promoter.pointer.get("current") if self.promoter else None) or self.configured_router,
                "history": list(self.promoter.pointer.get("history", [])) if self.promoter else [],
                "canary": self._canary_status(), "last_candidate": last.as_dict() if last else None}

    async def status(self) -> dict[str, Any]:
        counts = await asyncio.to_thread(self.store.counts)
        events = await asyncio.to_thread(self.store.events, None, 20)
        total = await asyncio.to_thread(self.store.spend)
        last = self.loop.last_outcome
        return {
            "profile": self.settings.profile, "labels": counts, "stats": dict(self.stats),
            "queue": self.queue.qsize(),
            "spend": {"shadow_usd": round(total["shadow_usd"], 8), "live_usd": round(self.budget.live_usd, 8),
                      "share": self.budget.share(), "available_usd": round(self.budget.available(), 8),
                      "today_usd": round(self.budget.day_usd, 8), "usd_per_day": self.settings.shadow.usd_per_day,
                      "today_usd_all_replicas": await self.day_cap.today_usd() if self.day_cap else None},
            "live": self.promoter.pointer.get("current") or f"configured router {self.configured_router!r}",
            "last_candidate": last.as_dict() if last else None,
            "canary": self._canary_status(),
            "history": [e for e in events if e["kind"] in ("promotion", "revert", "candidate", "canary",
                                                           "canary_stopped")],
        }


def _answer_text(body: bytes | None) -> str | None:
    """The assistant text of a non-streamed chat completion body; None when there is none."""
    if not body:
        return None
    try:
        return orjson.loads(body)["choices"][0]["message"]["content"] or ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
