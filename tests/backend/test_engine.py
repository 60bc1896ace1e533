"""Training, decoding, blending, inversion and shape editing on the tiny preset (sphere + torus).

The engine gives every shape its own detail grid: adding, removing, renaming or replacing shapes
must leave every other shape's decode bit-identical.
"""

import numpy as np
import pytest
import torch

from backend.api import _blend, decode, encode, interpolate, invert, remove, rename, replace
from backend.config import SIZES, ModelConfig, TrainConfig, get_preset
from backend.field.decode import blend_volume, fill_outside_band, marching_cubes
from backend.errors import BadInputError, BadMeshError, BadNameError, Cancelled, LibraryError
from backend.store.library import _network_tensors
from backend.geometry.meshes import Mesh, load_mesh
from backend.geometry.metrics import compare_meshes, component_count, is_closed, point_to_mesh_distance
from backend.field.model import CompactSdf


@pytest.fixture(scope="module")
def spot_mesh(data_dir):
    return load_mesh(data_dir / "spot_low_resolution.obj")


@pytest.fixture(scope="module")
def grown(tiny_library, spot_mesh, tmp_path_factory):
    """``tiny_library`` plus the spot mesh, added (shared weights frozen)."""
    return encode({"spot": spot_mesh}, preset="tiny", library=tiny_library, device="cpu",
                  cache_dir=tmp_path_factory.mktemp("spot-cache"))


@pytest.fixture(scope="module")
def decoded(tiny_library):
    """Vertices and faces of each shape of ``tiny_library`` decoded at 40^3 (the reference for edits)."""
    return {name: decode(tiny_library, name, resolution=40) for name in tiny_library.names}


def _assert_same_decode(library, name, reference):
    mesh = decode(library, name, resolution=40)
    np.testing.assert_array_equal(mesh.vertices, reference.vertices)
    np.testing.assert_array_equal(mesh.faces, reference.faces)


def _assert_same_shape_state(a, name_a, b, name_b):
    """Code, grid nodes and grid features of shape ``name_a`` of ``a`` equal those of ``name_b`` of ``b``."""
    i, j = a.index(name_a), b.index(name_b)
    assert torch.equal(a.codes[i], b.codes[j])
    ga, gb = a.model.detail.grid, b.model.detail.grid
    assert torch.equal(ga.keys[i], gb.keys[j])
    assert torch.equal(ga.shape_features(i), gb.shape_features(j))


# -- the network --------------------------------------------------------------------------------------

def test_geometric_init_is_a_sphere():
    torch.manual_seed(0)
    model = CompactSdf(ModelConfig(code_size=8, coarse_width=64, grid_resolution=16))
    model.detail.grid.set_shapes([np.zeros(0, dtype=np.int64)])  # one shape without stored nodes
    x = torch.randn(256, 3)
    x = x / x.norm(dim=1, keepdim=True) * torch.rand(256, 1)
    coarse, fused = model(0, torch.zeros(256, 8), x)
    sphere = x.norm(dim=1) - 0.5
    assert np.corrcoef(coarse.detach(), sphere)[0, 1] > 0.8  # a sphere up to finite-width noise
    assert model(0, torch.zeros(1, 8), torch.zeros(1, 3))[0] < 0
    assert torch.equal(coarse, fused)  # no nodes: the detail branch adds exactly nothing


def test_detail_branch_is_zero_away_from_stored_nodes():
    model = CompactSdf(ModelConfig(code_size=4, grid_resolution=9, grid_channels=2))
    grid = model.detail.grid
    grid.set_shapes([np.array([0])])  # only the corner node (-1, -1, -1)
    torch.nn.init.normal_(model.detail.out.weight)
    torch.nn.init.normal_(model.detail.out.bias)
    with torch.no_grad():
        grid.features[1:] = 1.0
    x = torch.tensor([[-1.0, -1.0, -1.0], [0.5, 0.5, 0.5]])
    _, presence = grid.lookup(*grid.corners(0, x))
    np.testing.assert_allclose(presence, [1.0, 0.0])
    correction, presence = model.detail(0, torch.zeros(2, 4), x)
    assert correction[1] != 0 and presence[1] == 0  # the MLP says something, presence silences it
    coarse, fused = model(0, torch.zeros(2, 4), x)
    assert fused[1] == coarse[1] and fused[0] != coarse[0]


def test_shapes_never_read_each_others_rows():
    grid = CompactSdf(ModelConfig(code_size=4, grid_resolution=5, grid_channels=3)).detail.grid
    keys = [np.array([0, 7, 30]), np.array([7, 8]), np.zeros(0, dtype=np.int64)]
    grid.set_shapes(keys, [torch.full((3, 3), 1.0), torch.full((2, 3), 2.0), None])
    assert [grid.node_count(s) for s in range(3)] == [3, 2, 0]
    assert grid.offsets == [0, 3, 5] and grid.features.shape == (6, 3) and torch.equal(grid.features[0], torch.zeros(3))
    index = torch.tensor([0, 7, 8, 30, 99])
    assert grid.rows_at(0, index).tolist() == [1, 2, 0, 3, 0]
    assert grid.rows_at(1, index).tolist() == [0, 4, 5, 0, 0]
    assert grid.rows_at(2, index).tolist() == [0, 0, 0, 0, 0]
    for shape, value in ((0, 1.0), (1, 2.0)):  # node 7 is shared by both shapes, each reads its own features
        rows, weights = grid.rows_at(shape, torch.tensor([[7] * 8])), torch.full((1, 8), 1 / 8)
        feats, presence = grid.lookup(rows, weights)
        torch.testing.assert_close(feats, torch.full((1, 3), value))
        assert presence.item() == pytest.approx(1.0)
    back_keys, back_features = grid.all_shapes()
    assert [k.tolist() for k in back_keys] == [k.tolist() for k in keys]
    assert [f.shape[0] for f in back_features] == [3, 2, 0]


# -- settings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, match", [
    (lambda: TrainConfig(steps=0), "steps"),
    (lambda: TrainConfig(blend_fraction=1.5), "blend_fraction"),
    (lambda: ModelConfig(grid_resolution=4), "grid_resolution"),
    (lambda: ModelConfig(code_size="64"), "code_size must be a number"),
    (lambda: ModelConfig(coarse_width=True), "coarse_width must be a number"),
])
def test_check_ranges_rejects_bad_settings(config, match):
    from backend.config import check_ranges

    with pytest.raises(ValueError, match=match):
        check_ranges(config())


def test_from_dict_checks_ranges_and_unknown_keys():
    assert ModelConfig.from_dict({"code_size": 32, "unknown": 1}).code_size == 32
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"code_size": 32, "unknown": 1}, strict=True)
    with pytest.raises(ValueError, match="outside"):
        ModelConfig.from_dict({"grid_channels": 0})
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_dict([1, 2])
    assert TrainConfig.from_dict(TrainConfig(steps=7).to_dict()) == TrainConfig(steps=7)


def test_get_preset_sizes_and_overrides():
    tiny = get_preset("tiny")
    assert tiny.model.grid_resolution == 64 and tiny.train.steps is None and tiny.train.detail_steps is None
    for size, (channels, band) in SIZES.items():
        preset = get_preset("tiny", size)
        assert preset.model.grid_channels == channels and preset.storage.band_cells == band
        assert preset.model.code_size == tiny.model.code_size  # only the detail budget changes
    steps = get_preset("tiny", steps=5)
    assert steps.train.steps == steps.train.detail_steps == 5  # ``steps`` sets both phases
    both = get_preset("tiny", steps=5, detail_steps=9)
    assert (both.train.steps, both.train.detail_steps) == (5, 9)
    assert get_preset("fast", "small", time_budget_s=None) == get_preset("fast", "small")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown size"):
        get_preset("tiny", "medium")
    with pytest.raises(ValueError, match="steps"):
        get_preset("tiny", steps=-1)


def test_steps_scale_with_the_collection():
    cfg = TrainConfig(coarse_steps_base=100, coarse_steps_per_shape=10, detail_visits=7, detail_batch=8)
    assert [cfg.coarse_steps_for(n) for n in (1, 2, 10)] == [110, 120, 200]
    assert cfg.detail_steps_for(100_000) == round(7 * 100_000 / 7)
    assert cfg.detail_steps_for(1) == 50  # a floor for tiny shapes
    assert cfg.detail_steps_for(2 * 100_000) > cfg.detail_steps_for(100_000)
    fixed = TrainConfig(steps=3, detail_steps=4)
    assert fixed.coarse_steps_for(1000) == 3 and fixed.detail_steps_for(10**9) == 4


def test_default_training_length_follows_the_rule(tiny_library):
    """Without ``steps`` an encode runs exactly the steps the config's rules give for its collection."""
    run = tiny_library.history[0]
    train = tiny_library.preset.train
    nodes = sum(tiny_library.model.detail.grid.node_count(i) for i in range(len(tiny_library.names)))
    assert run["kind"] == "encode" and run["coarse_steps"] == train.coarse_steps_for(2) == 300
    assert run["detail_steps"] == train.detail_steps_for(nodes)


# -- decoding ----------------------------------------------------------------------------------------------

def test_fill_outside_band_takes_the_sign_of_the_enclosing_band():
    """Two shells of band nodes: the core inside the inner shell is negative, the gap between the shells
    is positive (its boundary votes +), the outside is positive, and band values are kept."""
    r = 16
    ijk = np.stack(np.meshgrid(*[np.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cheb = np.abs(ijk - 7.5).max(1)  # Chebyshev distance from the centre: nested cubic shells
    inner = np.flatnonzero(np.abs(cheb - 2.5) < 0.1)  # a closed shell around a 4^3 core
    outer = np.flatnonzero(np.abs(cheb - 5.5) < 0.1)  # a closed shell around the gap
    index = np.concatenate([inner, outer])
    values = np.concatenate([np.full(len(inner), -0.01, np.float32), np.full(len(outer), 0.02, np.float32)])
    volume = fill_outside_band(index, values, r, fill=0.5).reshape(-1)
    np.testing.assert_array_equal(volume[index], values)
    core, gap, outside = cheb < 2.4, (cheb > 2.6) & (cheb < 5.4), cheb > 5.6
    assert np.all(volume[core] == -0.5) and np.all(volume[gap] == 0.5) and np.all(volume[outside] == 0.5)
    # the same shells with the inner one positive: the core follows its boundary and turns positive
    flipped = fill_outside_band(index, np.abs(values), r, fill=0.5).reshape(-1)
    assert np.all(flipped[core] == 0.5)
    # a region touching no band node at all is outside (+)
    assert np.all(fill_outside_band(np.zeros(0, np.int64), np.zeros(0, np.float32), 4, fill=1.0) == 1.0)


def test_fill_outside_band_majority_vote():
    """A region whose boundary is mostly negative is inside, whatever a few positive nodes say."""
    r = 12
    ijk = np.stack(np.meshgrid(*[np.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cheb = np.abs(ijk - 5.5).max(1)
    inner, outer = np.flatnonzero(np.abs(cheb - 1.5) < 0.1), np.flatnonzero(np.abs(cheb - 4.5) < 0.1)
    values = np.concatenate([np.full(len(inner), -1.0, np.float32), np.full(len(outer), 1.0, np.float32)])
    values[:5] = 1.0  # a few dissenting nodes on the inner shell
    volume = fill_outside_band(np.concatenate([inner, outer]), values, r, fill=0.25).reshape(-1)
    assert np.all(volume[cheb < 1.4] == -0.25)
    assert np.all(volume[(cheb > 1.6) & (cheb < 4.4)] == 0.25) and np.all(volume[cheb > 4.6] == 0.25)


def test_tiny_library_reconstructs_training_shapes(tiny_library, sphere_mesh, torus_mesh):
    for name, gt, bound in (("sphere", sphere_mesh, 4e-3), ("torus", torus_mesh, 6e-3)):
        mesh = decode(tiny_library, name, resolution=64, device="cpu")
        assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
        metrics = compare_meshes(gt, Mesh(mesh.vertices, mesh.faces), n_samples=20_000)
        assert metrics.cd_l1 < bound, (name, metrics)
        assert component_count(mesh.faces) == 1 and is_closed(mesh.faces)
        # decoded in the source's own coordinates: bounding boxes agree
        np.testing.assert_allclose(mesh.vertices.min(0), gt.vertices.min(0), atol=0.05 * np.ptp(gt.vertices))
    assert tiny_library.shape_info("torus")["stats"]["near_surface_error"] < 0.01


def test_shape_decodes_only_near_its_stored_band(tiny_library, data_dir):
    mesh = decode(tiny_library, "torus", resolution=64)
    assert 0 < mesh.stats["detail_fraction"] < 0.25
    assert 0 < mesh.stats["band_nodes"] <= mesh.stats["detail_evaluations"]
    normalized = decode(tiny_library, "torus", resolution=64, normalized=True)
    source = load_mesh(data_dir / "torus.obj")
    gt = tiny_library.shapes[1].transform.apply(source.vertices)
    distance = point_to_mesh_distance(normalized.vertices, gt, source.faces).distance
    # every vertex lies within the stored band (2 voxels of the 64^3 grid) plus a voxel of meshing slack
    assert distance.max() < 3 * 2 / 63


def test_blends_decode(tiny_library):
    for mode in ("linear", "slerp"):
        mesh = decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, resolution=48, mode=mode)
        assert len(mesh.faces) > 100 and np.all(np.isfinite(mesh.vertices))
    path = interpolate(tiny_library, ["sphere", "torus"], 3, resolution=48)
    assert len(path) == 3
    with pytest.raises(BadInputError, match="weights"):
        decode(tiny_library, {"sphere": -1.0, "torus": 0.5})
    with pytest.raises(LibraryError, match="no shape named"):
        decode(tiny_library, "cube")
    with pytest.raises(ValueError, match="detail"):
        decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, detail=1.5)


def test_inbetweens_of_two_closed_shapes_are_closed_single_pieces(tiny_library):
    """Every slerp in-between of the sphere and the torus (each one closed piece) is one closed piece too."""
    path = interpolate(tiny_library, ["sphere", "torus"], 7, resolution=64)
    for t, mesh in zip(np.linspace(0, 1, 7)[1:-1], path[1:-1]):
        assert component_count(mesh.faces) == 1 and is_closed(mesh.faces), t


def test_blend_training_teaches_the_blend_of_the_two_exact_fields(sphere_mesh, torus_mesh, tmp_path):
    """At the slerp midpoint of two codes, the coarse branch trained with blends is far closer to
    the mean of the two shapes' exact distances than the same training without blends."""
    from dataclasses import replace as replace_settings

    from backend.geometry.sampling import signed_distance
    from backend.field.train import slerp_rows

    tiny = get_preset("tiny")
    shapes = {"sphere": sphere_mesh, "torus": torus_mesh}
    probe = np.random.default_rng(0).uniform(-0.9, 0.9, (4000, 3)).astype(np.float32)
    errors = []
    for fraction in (0.0, 0.25):
        spec = replace_settings(tiny, model=replace_settings(tiny.model, detail=False),
                                train=replace_settings(tiny.train, blend_fraction=fraction))
        lib = encode(shapes, preset=spec, seed=0, device="cpu", cache_dir=tmp_path, sampling_workers=1)
        fields = []
        for name in lib.names:
            normalized = Mesh(lib.shapes[lib.index(name)].transform.apply(shapes[name].vertices), shapes[name].faces)
            fields.append(signed_distance(normalized.vertices, normalized.faces, probe))
        z = slerp_rows(lib.codes[:1], lib.codes[1:], torch.tensor([0.5])).expand(len(probe), -1)
        with torch.no_grad():
            predicted = lib.model.coarse(z, torch.as_tensor(probe)).numpy()
        errors.append(np.abs(predicted - (fields[0] + fields[1]) / 2).mean())
    assert errors[1] < 0.5 * errors[0], errors


def test_blend_with_detail_zero_is_the_coarse_shape(tiny_library):
    """detail=0 adds no shape's detail: the decode is the coarse branch's band decode of the blended code."""
    target = {"sphere": 0.3, "torus": 0.7}
    code, _, _ = _blend(tiny_library, target, "slerp")
    volume, _ = blend_volume(tiny_library.model, [(code, 1.0)], [], 40)
    coarse, _, _ = marching_cubes(volume)
    mesh = decode(tiny_library, target, resolution=40, detail=0.0, normalized=True)
    np.testing.assert_array_equal(mesh.vertices, coarse)
    assert mesh.stats["detail_evaluations"] == 0
    # at 0.7 the torus keeps some of its detail when the dial is up, so the full-detail blend differs
    full = decode(tiny_library, target, resolution=40, detail=1.0, normalized=True)
    assert full.stats["detail_evaluations"] > 0
    assert len(full.vertices) != len(coarse) or not np.array_equal(full.vertices, coarse)


def test_whole_shape_blend_with_detail_zero_is_coarse_and_with_detail_one_is_the_shape(tiny_library):
    code, _, weights = _blend(tiny_library, {"torus": 1.0}, "slerp")
    assert weights == {tiny_library.index("torus"): 1.0}
    torch.testing.assert_close(code, tiny_library.codes[1])
    volume, _ = blend_volume(tiny_library.model, [(code, 1.0)], [], 40)
    coarse, _, _ = marching_cubes(volume)
    np.testing.assert_array_equal(decode(tiny_library, {"torus": 1.0}, resolution=40, detail=0.0, normalized=True).vertices,
                                  coarse)
    np.testing.assert_array_equal(decode(tiny_library, {"torus": 2.0}, resolution=40, normalized=True).vertices,
                                  decode(tiny_library, "torus", resolution=40, normalized=True).vertices)


def test_raw_code_decodes(tiny_library):
    mesh = decode(tiny_library, tiny_library.codes[1].numpy(), resolution=40)
    assert len(mesh.faces) > 100 and mesh.stats["detail_evaluations"] == 0  # a raw code has no detail of its own
    with pytest.raises(BadInputError, match="raw code"):
        decode(tiny_library, np.zeros(3), resolution=40)


# -- adding, removing, renaming, replacing ------------------------------------------------------------------

def test_inversion_recovers_a_training_shape(tiny_library, torus_mesh):
    inverted = invert(tiny_library, torus_mesh, "torus again", device="cpu", seed=3)
    codes = inverted.codes
    fitted, torus, sphere = codes[2], codes[inverted.index("torus")], codes[inverted.index("sphere")]
    assert (fitted - torus).norm() < (fitted - sphere).norm()
    mesh = decode(inverted, "torus again", resolution=64)
    assert compare_meshes(torus_mesh, Mesh(mesh.vertices, mesh.faces), n_samples=20_000).cd_l1 < 0.01
    assert tiny_library.names == ["sphere", "torus"]  # the original object is untouched


def test_adding_leaves_every_old_shape_bit_identical(tiny_library, grown, decoded, sphere_mesh):
    assert grown.names == ["sphere", "torus", "spot"]
    assert grown.history[-1]["kind"] == "add" and grown.history[-1]["shapes"] == ["spot"]
    assert torch.equal(grown.codes[:2], tiny_library.codes)
    old, new = _network_tensors(tiny_library.model), _network_tensors(grown.model)
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)  # shared weights frozen
    for name in tiny_library.names:
        _assert_same_shape_state(tiny_library, name, grown, name)
        _assert_same_decode(grown, name, decoded[name])
    assert grown.model.detail.grid.node_count(2) > 0  # the new shape got its own grid
    with pytest.raises(BadMeshError, match="already in the library"):
        encode({"sphere": sphere_mesh}, preset="tiny", library=tiny_library, steps=1)


def test_added_shape_is_one_closed_piece_near_its_source(grown, spot_mesh):
    added = decode(grown, "spot", resolution=64)
    assert component_count(added.faces) == 1 and is_closed(added.faces)
    metrics = compare_meshes(spot_mesh, Mesh(added.vertices, added.faces), n_samples=10_000)
    assert metrics.cd_l1 < 0.08 and metrics.hausdorff < 0.3  # confined to its own stored band


def test_added_unseen_shape_fidelity(grown, spot_mesh):
    """An unseen shape added through the frozen networks is stored exactly (measured 0.001, joint encode 0.0009)."""
    added = decode(grown, "spot", resolution=64)
    assert compare_meshes(spot_mesh, Mesh(added.vertices, added.faces), n_samples=10_000).cd_l1 < 0.003


def test_remove_drops_the_shape_and_leaves_the_others_identical(grown, decoded, tmp_path):
    spot = decode(grown, "spot", resolution=40)
    smaller = remove(grown, ["torus"])
    assert smaller.names == ["sphere", "spot"] and len(smaller.codes) == 2
    assert len(smaller.model.detail.grid.keys) == 2
    grid = smaller.model.detail.grid
    assert grid.features.shape[0] == 1 + grid.node_count(0) + grid.node_count(1)  # the torus's rows are gone
    _assert_same_shape_state(grown, "sphere", smaller, "sphere")
    _assert_same_shape_state(grown, "spot", smaller, "spot")
    _assert_same_decode(smaller, "sphere", decoded["sphere"])
    _assert_same_decode(smaller, "spot", spot)
    assert grown.names == ["sphere", "torus", "spot"]  # the original object is untouched
    assert smaller.history[-1]["kind"] == "remove"
    tensors, _ = smaller.tensors()
    assert sorted(k for k in tensors if k.startswith("shape")) == [f"shape{i}.{k}" for i in (0, 1)
                                                                     for k in ("features", "nodes", "scales")]
    path = tmp_path / "smaller.csdf"
    smaller.save(path)
    from backend.store.library import Library

    back = Library.load(path)
    _assert_same_decode(back, "spot", spot)
    with pytest.raises(LibraryError, match="no shape named"):
        remove(grown, ["cube"])
    empty = remove(tiny_library_of(grown), ["sphere", "torus"])
    assert empty.names == [] and len(empty.codes) == 0


def tiny_library_of(grown):
    """The first two shapes of ``grown`` (sphere, torus) as their own library."""
    return remove(grown, ["spot"])


def test_rename_keeps_everything_but_the_name(tiny_library, decoded):
    renamed = rename(tiny_library, "torus", "ring")
    assert renamed.names == ["sphere", "ring"] and tiny_library.names == ["sphere", "torus"]
    _assert_same_shape_state(tiny_library, "torus", renamed, "ring")
    _assert_same_decode(renamed, "ring", decoded["torus"])
    assert renamed.shape_info("ring")["source_sha256"] == tiny_library.shape_info("torus")["source_sha256"]
    assert renamed.history[-1]["kind"] == "rename" and renamed.history[-1]["shapes"] == ["torus", "ring"]
    assert rename(tiny_library, "torus", "torus").names == ["sphere", "torus"]
    with pytest.raises(BadInputError, match="already in the library"):
        rename(tiny_library, "torus", "sphere")
    with pytest.raises(BadNameError):
        rename(tiny_library, "torus", "../ring")
    with pytest.raises(LibraryError, match="no shape named"):
        rename(tiny_library, "cube", "box")


def test_replace_keeps_the_name_and_changes_the_source(tiny_library, decoded, spot_mesh, tmp_path):
    replaced = replace(tiny_library, "torus", spot_mesh, device="cpu", cache_dir=tmp_path)
    assert sorted(replaced.names) == ["sphere", "torus"]
    info, before = replaced.shape_info("torus"), tiny_library.shape_info("torus")
    assert info["source_sha256"] == spot_mesh.content_hash() != before["source_sha256"]
    assert info["transform"] != before["transform"]  # the spot's own normalisation
    _assert_same_shape_state(tiny_library, "sphere", replaced, "sphere")
    _assert_same_decode(replaced, "sphere", decoded["sphere"])
    assert [h["kind"] for h in replaced.history[-2:]] == ["remove", "add"]
    with pytest.raises(LibraryError, match="no shape named"):
        replace(tiny_library, "cube", spot_mesh)


# -- training runs --------------------------------------------------------------------------------------------

def test_cancel_stops_training(sphere_mesh):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        encode({"s": sphere_mesh}, preset="tiny", should_stop=stop)


def test_progress_reports_eta(sphere_mesh):
    seen = []
    lib = encode({"s": sphere_mesh}, preset="tiny", steps=40, on_progress=seen.append)
    assert lib.history[-1]["coarse_steps"] == lib.history[-1]["detail_steps"] == 40  # 40 steps in each phase
    training = [p for p in seen if p.stage.startswith("training")]
    assert [p.stage for p in training][0] == "training coarse" and training[-1].stage == "training detail"
    assert {p.total for p in training} == {80}
    steps = [p.step for p in training]
    assert steps == sorted(steps) and steps[-1] >= 70  # detail reports continue after the coarse half
    assert min(p.step for p in training if p.stage == "training detail") >= 40
    assert training[-1].loss is not None and training[-1].eta_s is not None


def test_seed_makes_training_deterministic(sphere_mesh):
    a = encode({"s": sphere_mesh}, preset="tiny", steps=20, seed=5)
    b = encode({"s": sphere_mesh}, preset="tiny", steps=20, seed=5)
    torch.testing.assert_close(a.codes, b.codes)
    assert torch.equal(a.model.detail.grid.keys[0], b.model.detail.grid.keys[0])
    # Channel 0 (the stored distance) is set, not trained: exactly equal. The trained channels go through
    # threaded sparse-gradient sums, which are not bit-reproducible on a CPU: equal to one rounding level.
    fa, fb = a.model.detail.grid.features, b.model.detail.grid.features
    assert torch.equal(fa[:, 0], fb[:, 0])
    level = fa.abs().amax(0) / (2 ** (a.preset.storage.feature_bits - 1) - 1)
    assert torch.all((fa - fb).abs() <= level * 1.001 + 1e-6)


def test_size_changes_what_each_shape_stores(sphere_mesh, tmp_path):
    small = encode({"s": sphere_mesh}, preset="tiny", size="small", steps=5, cache_dir=tmp_path)
    large = encode({"s": sphere_mesh}, preset="tiny", size="large", steps=5, cache_dir=tmp_path)
    assert small.model.detail.grid.channels == SIZES["small"][0] and large.model.detail.grid.channels == SIZES["large"][0]
    assert small.model.detail.grid.node_count(0) < large.model.detail.grid.node_count(0)  # a wider stored band


def test_stored_features_are_already_quantised(tiny_library):
    """A fresh library equals what its file will hold: features sit on the int8 grid of their scales."""
    from backend.field.codec import round_trip

    grid = tiny_library.model.detail.grid
    for shape in range(len(tiny_library.names)):
        features = grid.shape_features(shape).detach()
        storage = tiny_library.preset.storage
        assert torch.equal(round_trip(features, storage.feature_bits, storage.distance_bits), features)
    channel0 = grid.shape_features(0).detach()[:, 0]  # the stored distance keeps distance_bits (8) of resolution
    assert len(torch.unique(channel0)) > 2 ** (tiny_library.preset.storage.feature_bits - 1) * 2 - 1


def test_libraries_from_before_distance_bits_keep_their_channel_0():
    """A file whose storage settings lack distance_bits stored channel 0 at feature_bits: it loads so."""
    from backend.store.library import _storage_config

    old = _storage_config({"band_cells": 2.0, "feature_bits": 6, "zstd_level": 19})
    assert old.distance_bits == 6 and old.channel0_bits == 6 and old.feature_bits == 6
    sixteen = _storage_config({"feature_bits": 16})
    assert sixteen.channel0_bits == 16 and sixteen.feature_bits == 16


def test_explore_codes(tiny_library):
    """Principal directions move a code, seeded variants repeat, a shape's nearest shape is itself."""
    from backend.api import code_of
    from backend.latent.explore import code_space, nearest_shapes, random_code, vary

    space = code_space(tiny_library)
    assert len(space.stds) == 1 and space.directions.shape == (1, tiny_library.codes.shape[1])
    base = code_of(tiny_library, "sphere")
    np.testing.assert_allclose(vary(tiny_library, base, [0.0]), base, atol=1e-6)
    assert not np.allclose(vary(tiny_library, base, [1.0]), base)
    np.testing.assert_array_equal(random_code(tiny_library, 5), random_code(tiny_library, 5))
    codes = tiny_library.codes.numpy().astype(np.float64)
    for seed in range(4):  # spread 0: a blend of library codes, i.e. on the segment between the two codes
        weights, *_ = np.linalg.lstsq(codes.T, random_code(tiny_library, seed, 0.0).astype(np.float64), rcond=None)
        np.testing.assert_allclose(codes.T @ weights, random_code(tiny_library, seed, 0.0), atol=1e-5)
        assert weights.min() >= -1e-4 and weights.sum() == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(random_code(tiny_library, 1, 0.0), random_code(tiny_library, 2, 0.0))
    assert not np.allclose(random_code(tiny_library, 1, 0.0), random_code(tiny_library, 1, 1.0))
    assert nearest_shapes(tiny_library, base, 1) == [("sphere", pytest.approx(0.0, abs=1e-6))]
    mesh = decode(tiny_library, random_code(tiny_library, 5), resolution=32, like="torus")
    assert len(mesh.faces) > 0


def test_field_blend_ends_are_the_shapes(tiny_library):
    """mode='distance' blends whole fields; at either end it is exactly the shape."""
    whole = decode(tiny_library, "torus", resolution=40)
    end = decode(tiny_library, {"sphere": 0.0, "torus": 1.0}, resolution=40, mode="distance")
    np.testing.assert_allclose(end.vertices, whole.vertices, atol=1e-6)  # the blended transform rounds
    middle = decode(tiny_library, {"sphere": 0.5, "torus": 0.5}, resolution=40, mode="distance")
    assert len(middle.faces) > 0 and np.isfinite(middle.vertices).all()
