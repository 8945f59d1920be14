import h5py
import numpy as np
import pytest
from sklearn.decomposition import PCA

from morphtools.embedding import write_embeddings
from morphtools.reduction import (
    batch_bounds,
    explained_variance_table,
    fit_incremental_pca,
    read_projection,
    write_projections,
)


def test_batch_bounds_cover_rows_and_merge_a_short_tail():
    assert batch_bounds(100, 30, 10) == [(0, 30), (30, 60), (60, 90), (90, 100)]  # tail of 10 kept
    assert batch_bounds(95, 30, 10) == [(0, 30), (30, 60), (60, 95)]    # tail of 5 merged
    assert batch_bounds(25, 100, 10) == [(0, 25)]
    with pytest.raises(ValueError, match="fewer than the 40 PCA components"):
        batch_bounds(30, 100, 40)


@pytest.fixture()
def low_rank_file(tmp_path):
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(600, 5)) * np.array([10, 6, 4, 2, 1])
    data = latent @ rng.normal(size=(5, 64)) + 0.01 * rng.normal(size=(600, 64))
    path = tmp_path / "rep.h5"
    write_embeddings(path, [f"g{i}" for i in range(600)], data, np.zeros((600, 3)), {"model_sha256": "x"})
    return path, data


def test_streamed_pca_matches_exact_pca(low_rank_file, tmp_path):
    path, data = low_rank_file
    ipca = fit_incremental_pca(path, n_components=8, batch_size=128)
    exact = PCA(n_components=8).fit(data)
    np.testing.assert_allclose(ipca.explained_variance_ratio_[:5], exact.explained_variance_ratio_[:5], rtol=1e-3)
    table = explained_variance_table(ipca, (2, 5, 8))
    assert table["explained_variance"].is_monotonic_increasing
    assert table.loc[table.n_components == 5, "explained_variance"].item() > 0.999
    out = tmp_path / "pca.h5"
    write_projections(path, out, ipca, dims=(2, 5), batch_size=100)
    ids, p5 = read_projection(out, 5)
    assert p5.shape == (600, 5) and ids[0] == "g0" and ids[-1] == "g599"
    reference = exact.transform(data)[:, :5]
    for k in range(5):  # components are defined up to sign
        assert abs(np.corrcoef(p5[:, k], reference[:, k])[0, 1]) > 0.999
    _, p2 = read_projection(out, 2)
    np.testing.assert_array_equal(p2, p5[:, :2])
    with h5py.File(out) as f:
        assert f.attrs["model_sha256"] == "x" and f["components"].shape == (8, 64)
    with pytest.raises(ValueError, match="from a 8-component PCA"):
        write_projections(path, tmp_path / "bad.h5", ipca, dims=(10,))
