"""Measure the local experts on a labelled prompt set, through the gateway, and write a router training table.

Every prompt of eval/local_prompts.py is sent to every expert *by name* through a running gateway (greedy,
short answers), graded against its reference answer by eval/grading.py, and written as a bench table
(prompt, fold, task, score:<expert>, cost:<expert>, answer:<expert>): the input of
`router-gateway train --from-table`. The cost is the gateway's own x-router-cost-usd for that answer.

    python scripts/label_local_experts.py --url http://127.0.0.1:8080/v1 --out eval/local_labels.csv

Prints each expert's mean score per task (the honest picture of what the local experts can do).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval.grading import grade  # noqa: E402
from eval.local_prompts import LabelledPrompt, build  # noqa: E402


def ask(client: openai.OpenAI, expert: str, item: LabelledPrompt, max_tokens: int) -> tuple[str, float]:
    """The expert's greedy answer through the gateway, and what the gateway says it cost."""
    raw = client.chat.completions.with_raw_response.create(
        model=expert, messages=[{"role": "user", "content": item.prompt}], max_tokens=max_tokens,
        temperature=0, seed=0)
    reply = raw.parse()
    if raw.headers.get("x-router-expert") != expert:
        raise RuntimeError(f"asked {expert}, answered by {raw.headers.get('x-router-expert')}")
    return reply.choices[0].message.content or "", float(raw.headers.get("x-router-cost-usd", "nan"))


def label_expert(client, expert: str, items: list[LabelledPrompt], max_tokens: int) -> list[tuple[float, float, str]]:
    """(score, cost, answer) for every prompt, one expert, in order, with a progress line every 10 s."""
    out, last = [], time.monotonic()
    for i, item in enumerate(items, 1):
        answer, cost = ask(client, expert, item, max_tokens)
        out.append((grade(item.grader, answer, item.reference, item.choices), cost, answer))
        if time.monotonic() - last >= 10 or i == len(items):
            print(f"[label] {expert}: {i}/{len(items)}", file=sys.stderr, flush=True)
            last = time.monotonic()
    return out


def previous_results(path: Path, items: list[LabelledPrompt], keep: list[str]) -> dict[str, list]:
    """Columns of experts not being relabelled, from an existing table (--update): labelling one expert at a
    time lets a small machine hold one vLLM server at a time."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = {r["prompt"]: r for r in csv.DictReader(f)}
    experts = [h[len("score:"):] for h in next(iter(rows.values())) if h.startswith("score:")] if rows else []
    out = {}
    for e in experts:
        if e in keep:
            continue
        if any(it.prompt not in rows for it in items):
            raise SystemExit(f"{path} lacks prompts of the current set: relabel every expert")
        out[e] = [(float(rows[it.prompt][f"score:{e}"]), float(rows[it.prompt][f"cost:{e}"]),
                   rows[it.prompt][f"answer:{e}"]) for it in items]
    return out


def write_table(path: Path, items: list[LabelledPrompt], results: dict[str, list]) -> None:
    experts = list(results)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["prompt", "fold", "task", "reference"] + [f"score:{e}" for e in experts]
                        + [f"cost:{e}" for e in experts] + [f"answer:{e}" for e in experts])
        for i, item in enumerate(items):
            row = [item.prompt, i % 5, item.task, item.reference]
            row += [f"{results[e][i][0]:g}" for e in experts] + [f"{results[e][i][1]:.3g}" for e in experts]
            row += [results[e][i][2].strip() for e in experts]
            writer.writerow(row)


def summary(items: list[LabelledPrompt], results: dict[str, list]) -> str:
    """Markdown table: mean score per task and expert, and mean cost per answer."""
    tasks = sorted({it.task for it in items})
    lines = ["| expert | " + " | ".join(tasks) + " | all | mean cost per answer |",
             "| --- |" + " --- |" * (len(tasks) + 2)]
    for expert, rows in results.items():
        cells = []
        for task in tasks + [None]:
            scores = [r[0] for it, r in zip(items, rows) if task is None or it.task == task]
            cells.append(f"{sum(scores) / len(scores):.2f}")
        cost = sum(r[1] for r in rows) / len(rows)
        lines.append(f"| {expert} | " + " | ".join(cells) + f" | ${cost:.2e} |")
    return "\n".join(lines)


def regrade(path: Path) -> int:
    """Recompute every score of an existing table from its stored answers with the current graders."""
    items = build()
    by_prompt = {it.prompt: it for it in items}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    experts = [h[len("score:"):] for h in rows[0] if h.startswith("score:")]
    order = [by_prompt[r["prompt"]] for r in rows]
    results = {e: [(grade(it.grader, r[f"answer:{e}"], it.reference, it.choices), float(r[f"cost:{e}"]),
                    r[f"answer:{e}"]) for it, r in zip(order, rows)] for e in experts}
    write_table(path, order, results)
    print(f"re-graded {path}\n\n{summary(order, results)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080/v1", help="the gateway's base URL")
    ap.add_argument("--experts", nargs="+", help="experts to label (default: every expert the gateway lists)")
    ap.add_argument("--out", type=Path, default=Path("eval/local_labels.csv"))
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--regrade", action="store_true",
                    help="re-grade the answers stored in --out (after a grader fix); no requests sent")
    ap.add_argument("--update", action="store_true",
                    help="keep the other experts' columns of an existing --out table, relabel only these")
    args = ap.parse_args()
    if args.regrade:
        return regrade(args.out)
    client = openai.OpenAI(base_url=args.url, api_key="unused-without-keys", max_retries=1, timeout=300)
    experts = args.experts or [m.id for m in client.models.list() if (m.model_extra or {}).get("kind") == "expert"]
    items = build()
    print(f"[label] {len(items)} prompts x {len(experts)} experts through {args.url}", file=sys.stderr)
    started = time.monotonic()
    # One thread per expert: each vLLM server answers its own sequence while the others answer theirs.
    with ThreadPoolExecutor(max_workers=len(experts)) as pool:
        futures = {e: pool.submit(label_expert, client, e, items, args.max_tokens) for e in experts}
        results = {e: f.result() for e, f in futures.items()}
    if args.update:
        results = {**previous_results(args.out, items, experts), **results}
    write_table(args.out, items, results)
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s\n\n{summary(items, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
