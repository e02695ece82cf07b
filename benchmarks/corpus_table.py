"""The outcome of every file of the bad-input corpus at each stage, as a markdown table.

    python benchmarks/corpus_table.py [WORKDIR]

Builds the corpus of tests/test_corpus.py in WORKDIR (a temporary folder by default), then
runs index (folder form) -> (files change) -> extract -> train gbm -> predict through the
command line, exactly as the test does, and prints input -> outcome per stage.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import TINY, run_cli  # noqa: E402
from test_corpus import LIMITS, build_corpus, change_after_index  # noqa: E402

from vidstore.store import FeatureStore  # noqa: E402


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="corpus"))
    sets = [a for item in TINY for a in ("--set", item)]
    root = work / "corpus"
    cases = build_corpus(root)
    samples, store, runs, preds = work / "samples.parquet", work / "store.zarr", work / "runs", work / "preds.csv"
    run_cli("index", str(root), "--out", str(samples))
    change_after_index(root)
    run_cli("extract", "--samples", str(samples), "--store", str(store), "-c", "configs/demo.yaml", *sets, *LIMITS)
    run_cli("train", "gbm", "--store", str(store), "-c", "configs/demo.yaml", "--out", str(runs), *sets,
            "--set", "train.folds=2", "--set", "train.bootstrap=0")
    run_cli("predict", str(next(runs.iterdir())), str(root), "--out", str(preds), "--workers", "1", *sets, *LIMITS)
    index = {r["video_id"]: r for r in pl.read_parquet(samples).iter_rows(named=True)}
    stored = FeatureStore.open(str(store)).rows().filter(pl.col("variant") == 0)
    extracted = {r["video_id"]: r for r in stored.iter_rows(named=True)}
    predicted = {r["video_id"]: r for r in pl.read_csv(preds, infer_schema_length=0).iter_rows(named=True)}

    def cell(status: str, reason: str) -> str:
        return status if not reason else f"{status}: {reason}"

    print("| input | index | extract | predict |")
    print("|---|---|---|---|")
    for rel in sorted(cases, key=lambda r: (cases[r]["expect"] != "ok", r)):
        i = index.get(rel)
        e = extracted.get(rel)
        p = predicted.get(rel)
        print(
            f"| `{rel}` | {cell(i['status'], i['reason']) if i else '-'} "
            f"| {cell(e['status'], e['reason']) if e else 'not in the store'} "
            f"| {(('ok, p=' + format(float(p['prob_fake']), '.2f')) if p['status'] == 'ok' else cell(p['status'], p['reason'])) if p else 'not listed (deleted)'} |"
        )


if __name__ == "__main__":
    main()
