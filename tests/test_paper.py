"""The published-numbers file (t5lit/paper/tables.yaml) against values checked by hand in the paper, one or
more from each table; its claims hold in its own numbers; bad table and row names are one-line errors."""

import pytest

from t5lit.paper import AVERAGE, get_table, paper_columns, tables
from t5lit.registry import ConfigError

# (table, row, column, value): read off the paper's tables (via shared/paper/TABLES.md, Table 1 checked twice).
HAND_CHECKED = [
    (1, "baseline", "GLUE", 83.28), (1, "baseline", "EnRo", 27.65), (1, "no_pretraining", "SQuAD", 50.31),
    (2, "enc_dec_shared_denoising", "SGLUE", 70.73), (2, "lm_lm", "SQuAD", 53.81), (2, "prefix_lm_lm", "EnFr", 37.51),
    (4, "deshuffling", "GLUE", 73.17), (4, "prefix_language_modeling", "EnRo", 27.49),
    (5, "drop_corrupted_tokens", "GLUE", 84.44), (5, "mass_style", "EnRo", 27.55),
    (6, "rate_50", "GLUE", 81.27), (6, "rate_10", "CNNDM", 19.00),
    (7, "span_3", "SGLUE", 72.53), (7, "span_10", "EnRo", 27.69),
    (8, "wikipedia_tbc", "SQuAD", 82.08), (8, "c4_unfiltered", "GLUE", 81.46),
    (9, "tokens_2_23", "SGLUE", 59.29), (9, "tokens_2_27", "EnDe", 27.02),
    (10, "adapters_32", "EnDe", 13.84), (10, "adapters_2048", "GLUE", 82.62),
    (10, "gradual_unfreezing", "SGLUE", 70.79),
    (11, "equal", "GLUE", 76.13), (11, "proportional_2_19", "EnRo", 27.76), (11, "temperature_8", "SQuAD", 77.14),
    (12, "leave_one_out", "SGLUE", 71.68), (12, "supervised_multi_task_pretraining", "EnFr", 40.13),
    (13, "size2_steps2", "GLUE", 86.18), (13, "ensemble4", "CNNDM", 20.10),
    (14, "t5_base", "SQuAD", 85.44), (14, "t5_11b", "SGLUE", 88.9),
]


@pytest.mark.parametrize("number,row,column,value", HAND_CHECKED)
def test_hand_checked_values(number, row, column, value):
    assert get_table(number).row(row).value(column) == value


def test_tables_and_their_baselines():
    assert sorted(tables()) == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]  # Table 3 holds examples only
    assert paper_columns() == ("GLUE", "CNNDM", "SQuAD", "SGLUE", "EnDe", "EnFr", "EnRo")
    t1 = get_table(1)
    for number in (2, 5, 6, 7, 8):  # the baseline experiment, reported again in each table as ★
        star = get_table(number).row(get_table(number).baseline)
        assert star.values == t1.row("baseline").values and star.label.startswith("★")
        assert star.tasks["glue_cola.mcc"] == 53.84 and star.tasks["super_glue_wsc.accuracy"] == 78.56
    assert t1.std["SGLUE"] == 0.416 and get_table(4).baseline is None
    assert get_table(5).row("drop_corrupted_tokens").tasks == {"glue_cola.mcc": 60.04}
    t2 = get_table(2)
    assert [t2.row(r).extra["params"] for r in ("enc_dec_denoising", "lm_denoising")] == ["2P", "P"]
    assert t2.row("enc_dec_6_layers_lm").extra["cost"] == "M/2" and get_table(14).split == "test"
    assert t2.row("enc_dec_denoising").value(AVERAGE) == pytest.approx(349.21 / 7)
    assert get_table(14).row("t5_11b").value(AVERAGE) is None  # not every column published
    assert len(t2.rows) == 10 and len(get_table(11).rows) == 10 and len(get_table(13).rows) == 6


def test_every_claim_holds_in_the_published_numbers():
    claims = [(n, c) for n, t in tables().items() for c in t.claims]
    assert len(claims) >= 15
    for number, claim in claims:
        assert claim.holds_in(get_table(number)), (number, claim.text)


def test_bad_names_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"no table 3 .*valid: 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14$"):
        get_table(3)
    with pytest.raises(ConfigError, match="no table 'tableX'"):
        get_table("tableX")
    assert get_table("table7") is get_table(7) is get_table("7")
    with pytest.raises(ConfigError, match="unknown row of Table 2 'lm_denosing'; did you mean 'lm_denoising'") as err:
        get_table(2).row("lm_denosing")
    assert "\n" not in str(err.value)
