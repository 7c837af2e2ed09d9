"""Metric formulas against independent references: closed forms, naive loops, known cases."""
import numpy as np
import pytest
import scipy.stats
import torch

from metrics import metric_utils
from metrics.frechet_inception_distance import frechet_distance
from metrics.inception_score import inception_score
from metrics.kernel_inception_distance import kernel_distance
from metrics.perceptual_path_length import slerp, trimmed_mean
from metrics.precision_recall import compute_distances, manifold_precision_recall

#----------------------------------------------------------------------------
# Frechet distance.

def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    # For diagonal covariances: ||mu1-mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rnd = np.random.RandomState(0)
    mu1, mu2 = rnd.randn(16), rnd.randn(16)
    a, b = rnd.uniform(0.1, 3, 16), rnd.uniform(0.1, 3, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)

def test_frechet_distance_matches_closed_form_for_commuting_covariances():
    # Covariances sharing eigenvectors Q: distance = sum over eigenvalues as in the diagonal case.
    rnd = np.random.RandomState(1)
    q, _ = np.linalg.qr(rnd.randn(8, 8))
    a, b = rnd.uniform(0.5, 2, 8), rnd.uniform(0.5, 2, 8)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = rnd.randn(8)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-8, abs=1e-10)

def test_frechet_distance_of_scalar_gaussians_is_w2_squared():
    # In 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[1.0]])) == pytest.approx(9 + 1)

def test_fid_of_a_feature_set_against_itself_is_zero():
    rnd = np.random.RandomState(2)
    stats = metric_utils.FeatureStats(capture_mean_cov=True)
    stats.append(rnd.randn(500, 64) @ rnd.randn(64, 64))
    mu, sigma = stats.get_mean_cov()
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)

def test_frechet_distance_handles_singular_covariances():
    # Rank-deficient covariances (fewer samples than dimensions) must still give a finite, real value.
    rnd = np.random.RandomState(3)
    x, y = rnd.randn(5, 20), rnd.randn(5, 20) + 1
    fd = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert np.isfinite(fd) and isinstance(fd, float)

def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='mismatched'):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))

#----------------------------------------------------------------------------
# FeatureStats.

def test_feature_stats_mean_cov_match_numpy_population_covariance():
    rnd = np.random.RandomState(4)
    x = rnd.randn(300, 10) * 3 + 1
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=250)
    for chunk in np.array_split(x, 7):
        stats.append(chunk)
    mean, cov = stats.get_mean_cov()
    kept = x[:250].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mean, kept.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(kept, rowvar=False, bias=True), rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(stats.get_all(), kept.astype(np.float32))
    assert stats.is_full() and stats.num_items == 250

def test_feature_stats_save_load_round_trip(tmp_path):
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=10)
    stats.append(np.arange(24, dtype=np.float32).reshape(8, 3))
    path = tmp_path / 'sub' / 'stats.npz'
    stats.save(str(path))
    assert [p.name for p in path.parent.iterdir()] == ['stats.npz'] # No temp file left behind.
    loaded = metric_utils.FeatureStats.load(str(path))
    assert loaded.num_items == 8 and loaded.max_items == 10
    np.testing.assert_array_equal(loaded.get_all(), stats.get_all())
    for a, b in zip(loaded.get_mean_cov(), stats.get_mean_cov()):
        np.testing.assert_array_equal(a, b)

def test_metric_options_refuse_several_processes_without_torch_distributed():
    with pytest.raises(ValueError, match='torch.distributed'):
        metric_utils.MetricOptions(num_gpus=2, rank=0)

#----------------------------------------------------------------------------
# KID.

def naive_unbiased_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, by explicit loops."""
    m, d = x.shape[0], x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy

def test_kid_matches_naive_unbiased_estimator_on_one_full_subset():
    rnd = np.random.RandomState(5)
    real, gen = rnd.randn(12, 6), rnd.randn(12, 6) * 1.5 + 0.3
    # One subset holding every item: the subset order does not change the estimate.
    kid = kernel_distance(real, gen, num_subsets=1, max_subset_size=12)
    assert kid == pytest.approx(naive_unbiased_mmd2(gen, real), rel=1e-10)

def test_kid_subsets_average_naive_estimates_of_the_same_draws():
    rnd = np.random.RandomState(6)
    real, gen = rnd.randn(20, 4), rnd.randn(15, 4) + 0.5
    kid = kernel_distance(real, gen, num_subsets=3, max_subset_size=5, rnd=np.random.RandomState(9))
    draw = np.random.RandomState(9)
    expected = []
    for _ in range(3):
        g = gen[draw.choice(15, 5, replace=False)]
        r = real[draw.choice(20, 5, replace=False)]
        expected.append(naive_unbiased_mmd2(g, r))
    assert kid == pytest.approx(np.mean(expected), rel=1e-10)

def test_kid_is_near_zero_for_same_distribution_and_positive_for_shifted():
    rnd = np.random.RandomState(7)
    a, b = rnd.randn(400, 8), rnd.randn(400, 8)
    same = kernel_distance(a, b, num_subsets=20, max_subset_size=200)
    shifted = kernel_distance(a, b + 1.0, num_subsets=20, max_subset_size=200)
    assert abs(same) < 0.05 * shifted and shifted > 0

#----------------------------------------------------------------------------
# Precision / recall.

def test_compute_distances_matches_scipy_with_padded_column_batches():
    torch.manual_seed(0)
    rows, cols = torch.randn(7, 5), torch.randn(23, 5)
    dist = compute_distances(rows, cols, col_batch_size=4)
    expected = scipy.spatial.distance.cdist(rows.numpy(), cols.numpy())
    np.testing.assert_allclose(dist.numpy(), expected, rtol=1e-4, atol=1e-4)

def naive_precision_recall(real, gen, k):
    def radii(points):
        d = scipy.spatial.distance.cdist(points, points)
        return np.sort(d, axis=1)[:, k] # Column 0 is the point itself.
    def coverage(manifold, probes):
        d = scipy.spatial.distance.cdist(probes, manifold)
        return float(np.mean((d <= radii(manifold)[None, :]).any(axis=1)))
    return coverage(real, gen), coverage(gen, real)

def test_precision_recall_match_naive_knn_on_overlapping_clouds():
    torch.manual_seed(1)
    real = torch.randn(60, 3)
    gen = torch.randn(50, 3) * 0.6 + torch.tensor([0.8, 0, 0])
    res = manifold_precision_recall(real, gen, nhood_size=3, row_batch_size=16, col_batch_size=7)
    p, r = naive_precision_recall(real.numpy().astype(np.float64), gen.numpy().astype(np.float64), 3)
    assert res['precision'] == pytest.approx(p, abs=1e-6)
    assert res['recall'] == pytest.approx(r, abs=1e-6)
    assert 0 < res['recall'] < res['precision'] # Narrower fakes inside the reals: high P, lower R.

def test_precision_recall_identical_clouds_are_one_and_far_clouds_zero():
    torch.manual_seed(2)
    real = torch.randn(40, 4)
    same = manifold_precision_recall(real, real.clone(), nhood_size=3)
    assert same == {'precision': 1.0, 'recall': 1.0}
    far = manifold_precision_recall(real, torch.randn(40, 4) + 100, nhood_size=3)
    assert far == {'precision': 0.0, 'recall': 0.0}

#----------------------------------------------------------------------------
# Inception score.

def test_inception_score_uniform_is_one_and_balanced_one_hot_is_k():
    k, n = 7, 70
    assert inception_score(np.full([n, k], 1 / k), num_splits=10)[0] == pytest.approx(1.0)
    one_hot = np.eye(k)[np.arange(n) % k] # Each split of 7 holds every class once.
    mean, std = inception_score(one_hot, num_splits=10)
    assert mean == pytest.approx(k) and std == pytest.approx(0, abs=1e-12)

def test_inception_score_matches_scipy_entropy_form():
    # IS = exp(H(p(y)) - E_x H(p(y|x))) for one split.
    rnd = np.random.RandomState(8)
    probs = rnd.dirichlet(np.ones(5) * 0.5, size=30)
    expected = np.exp(scipy.stats.entropy(probs.mean(0)) - np.mean([scipy.stats.entropy(p) for p in probs]))
    assert inception_score(probs, num_splits=1)[0] == pytest.approx(expected, rel=1e-10)

#----------------------------------------------------------------------------
# PPL helpers.

def test_slerp_endpoints_and_constant_angular_speed():
    torch.manual_seed(3)
    a, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    torch.testing.assert_close(slerp(a, b, torch.zeros(4, 1, dtype=torch.float64)), an)
    torch.testing.assert_close(slerp(a, b, torch.ones(4, 1, dtype=torch.float64)), bn)
    theta = torch.acos((an * bn).sum(1))
    mid = slerp(a, b, torch.full([4, 1], 0.3, dtype=torch.float64))
    torch.testing.assert_close(torch.acos((an * mid).sum(1).clamp(-1, 1)), 0.3 * theta)

def test_trimmed_mean_drops_values_outside_1st_and_99th_percentiles():
    # 1000 values with 5 huge outliers at each end: the 1% / 99% order statistics
    # (indices floor(0.01 * 999) = 9 and ceil(0.99 * 999) = 990) cut them off.
    rnd = np.random.RandomState(10)
    x = np.concatenate([rnd.uniform(0, 1, 990), np.full(5, 1e9), np.full(5, -1e9)])
    s = np.sort(x)
    lo, hi = s[9], s[990]
    expected = np.mean([v for v in x if lo <= v <= hi])
    assert trimmed_mean(x) == pytest.approx(expected, rel=1e-12)
    assert abs(trimmed_mean(x)) < 1 # The outliers are gone.

#----------------------------------------------------------------------------
