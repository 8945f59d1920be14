from morphtools.decision_tree import DECALS_DR5, GZ2_TREE, decals_answer_columns, gz2_columns, question_slices


def test_decals_tree_has_the_real_questions_and_answers():
    assert len(DECALS_DR5) == 10
    assert len(decals_answer_columns()) == 34
    assert "smooth-or-featured_smooth_fraction" in decals_answer_columns("_fraction")
    assert "merging_merger_fraction" in decals_answer_columns("_fraction")
    assert "disk-edge-on_no_fraction" in decals_answer_columns("_fraction")
    names = {q.name for q in DECALS_DR5}
    for q in DECALS_DR5:  # every dependency points at a real answer of an earlier question
        if q.asked_if:
            parent_q, parent_a = q.asked_if
            assert parent_q in names
            assert parent_a in next(p for p in DECALS_DR5 if p.name == parent_q).answers


def test_question_slices_cover_all_answers_contiguously():
    slices = question_slices()
    assert slices[0][1].start == 0 and slices[-1][1].stop == 34
    for (_, a), (_, b) in zip(slices, slices[1:], strict=False):
        assert a.stop == b.start


def test_gz2_columns_match_kaggle():
    cols = gz2_columns()
    assert len(cols) == 37
    assert cols[0] == "Class1.1" and cols[-1] == "Class11.6"
    assert len(GZ2_TREE) == 11
