"""The labeller against the hand-checked labels of ../shared/corpus (skipped when it is absent)."""

import json

from renda.corpus import label_report_text
from renda.parsing import normalise_line
from training.pipeline import labeller_agreement

REQUIRED = 0.97


def test_labeller_agreement_on_hand_checked_jsonl(corpus):
    result = labeller_agreement(sorted(str(p) for p in corpus.glob("*.jsonl")))
    assert result["all"]["rows"] >= 300
    assert result["all"]["agreement"] >= REQUIRED, result["misses"]
    assert result["certain"]["agreement"] >= REQUIRED


def test_parser_and_labeller_on_whole_reports(corpus):
    """Reports parsed from their web-page text agree with the hand-checked paragraph labels."""
    gold = {}
    for line in (corpus / "seed_gold.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        gold[normalise_line(row["text"])] = row["label"]
    hits = total = 0
    for path in sorted((corpus / "reports").glob("*.txt")):
        labelled, unlabelled = label_report_text(path.read_text(encoding="utf-8"), path.stem)
        assert not unlabelled
        for record in labelled:
            assert record.text in gold, f"{path.name}: parsed paragraph not in the gold file: {record.text[:30]}"
            total += 1
            hits += gold[record.text] == record.label
    assert total == len(gold)  # every gold paragraph found, none split or merged wrongly
    assert hits / total >= REQUIRED
