"""``router-gateway train-verifier``: fit a learned cascade verifier from a table with answers or from logs.

From a table: the rows' ``answer:<expert>`` text and ``score:<expert>`` (>= 0.5 = right). From logs
(``logs export``): cascade records that logged their answers, labelled by the request's feedback score
(which grades the answer returned, i.e. the last answering tier's). The artifact is arrays + meta.json.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-verifier", help="train a learned cascade verifier (answer -> P(right))",
                              description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-table", help="routing table CSV with answer:<expert> columns")
    src.add_argument("--from-logs", help="JSONL from `router-gateway logs export`")
    p.add_argument("--expert", required=True, help="the expert (table model name) whose answers are checked")
    p.add_argument("--out", required=True, help="artifact directory")
    p.set_defaults(func=run)


def _table_rows(path: str, expert: str) -> tuple[list[str], list[str], list[float], list[int]]:
    from eval.cascade import load_answers
    from eval.tables import load_eval_table

    table = load_eval_table(path)
    answers = load_answers(path, table)
    if expert not in answers:
        raise ValueError(f"{path} has no answer:{expert} column (answered: {', '.join(answers) or 'none'})")
    j = table.models.index(expert)
    return list(table.prompts), answers[expert], [float(s) for s in table.scores[:, j]], list(table.folds)


def _log_rows(path: str, expert: str) -> tuple[list[str], list[str], list[float], list[int]]:
    import orjson

    from router_gateway.domain.record import RequestRecord

    prompts, answers, labels, groups = [], [], [], []
    with open(path, "rb") as f:
        for line in f:
            row = orjson.loads(line)
            record, feedback = RequestRecord.from_row(row), row.get("feedback") or {}  # the export adds feedback
            text = ((record.cascade or {}).get("answers") or {}).get(expert)
            if record.chosen_expert != expert or text is None or feedback.get("score") is None or not record.prompt:
                continue
            prompts.append(record.prompt)
            answers.append(text)
            labels.append(float(feedback["score"]))
            groups.append(len(groups) % 5)
    return prompts, answers, labels, groups


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from router_gateway.cascade.learned import train_learned_verifier

    try:
        rows = (_table_rows(args.from_table, args.expert) if args.from_table
                else _log_rows(args.from_logs, args.expert))
    except (OSError, ValueError) as exc:
        print(f"router-gateway train-verifier: {exc}", file=sys.stderr)
        return 2
    prompts, answers, labels, groups = rows
    if len(prompts) < 20:
        print(f"router-gateway train-verifier: {len(prompts)} labelled rows for {args.expert}; need 20",
              file=sys.stderr)
        return 2
    verifier = train_learned_verifier(prompts, answers, np.asarray(labels), np.asarray(groups),
                                      meta={"expert": args.expert,
                                            "source": args.from_table and "table" or "logs"})
    verifier.save(args.out)
    print(f"wrote {args.out}: {len(prompts)} rows, l2 {verifier.meta['l2']}", file=sys.stderr)
    return 0
