"""The counterfactual family of `evaluate()`: are the model's counterfactual explanations a real
change of class, judged by a classifier other than the model that made them, and do they look
like real images of their target class?

N class-balanced test images, one target each (or all other classes), counterfactuals made by
`dualat explain`'s own function (explain.explain: targeted PGD on log p(target|x) inside L2 balls,
steps of 5 x radius / steps) at every radius; per radius: validity under the explained model and
under the judge, closeness / sparsity, and realism (FD per target class pooled over classes, k-NN
distance ratio, IM1 / IM2). Formulas: evaluate/cfmetrics.py and docs/guide.md.
"""
from __future__ import annotations

import torch

from ..data import data_info, load_split
from ..errors import DualatError
from ..explain import explain, probs, run_radii
from ..explain_io import save_counterfactuals
from ..loading import load_model
from ..precision import FLOAT32
from .autoencoders import load_autoencoders
from .cfmetrics import CHANGED, IM_EPS, KNNRatio, class_stats, closeness, im_scores, pooled_fd
from .extractors import make_extractor
from .options import CounterfactualOptions, Target
from .robust import clean_accuracy

TARGETS = ("wrong", "wrong-judge", "true", "all")
ROW_KEYS = ("flip_rate", "target_prob", "judge_flip_rate", "judge_target_prob", "l2", "l1", "changed_frac", "fd",
            "knn_ratio", "im1", "im2")


def parse_radii(radii) -> list[float] | None:
    """[1.0, 2.0] from numbers or '1,2'; a radius <= 0 (or not a number) is a DualatError."""
    if radii is None:
        return None
    items = radii.split(",") if isinstance(radii, str) else list(radii)
    try:
        values = [float(r) for r in items if str(r).strip()]
    except ValueError:
        raise DualatError(f"--radii takes positive numbers, got {radii!r}") from None
    if not values or not all(r > 0 for r in values):  # `not r > 0` also refuses NaN
        raise DualatError(f"--radii must be positive numbers, got {values}")
    return values


def check_counterfactual_options(o: CounterfactualOptions, num_classes: int | None = None) -> None:
    """Argument mistakes surface before minutes of work: the target, the radii (parsed in place)."""
    t = o.cf_target
    if isinstance(t, str) and t not in TARGETS:
        if not t.strip().lstrip("-").isdigit():
            raise DualatError(f"--cf-target takes {', '.join(TARGETS)} or a class index; got {t!r}")
        t = o.cf_target = int(t)
    if not isinstance(t, str):
        if isinstance(t, bool) or not isinstance(t, int) or t < 0 or (num_classes is not None and t >= num_classes):
            top = f": this model has {num_classes} classes, 0..{num_classes - 1}" if num_classes else ""
            raise DualatError(f"--cf-target {t!r} is not a class index{top}")
    o.radii = parse_radii(o.radii)


def balanced_indices(labels: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """The first n // k (+1 for the first n % k classes) test indices of each class, in test order,
    but at most half of a class's images: the rest are the real images the realism numbers need."""
    rows = [(labels == c).nonzero().view(-1) for c in range(k)]
    picked = [r[:min(n // k + (c < n % k), len(r) // 2)] for c, r in enumerate(rows)]
    return torch.cat(picked).sort().values


def choose_targets(spec, labels: torch.Tensor, p_model: torch.Tensor, p_judge: torch.Tensor):
    """(pair -> input index (P,), targets (P,)) for inputs with labels (N,) and the model's and
    judge's probabilities (N, K). wrong: the model's most likely class other than the label;
    wrong-judge: the judge's (the same targets for every model judged); true: the label; all:
    every class but the label; an index: that class for every input."""
    n, k = p_model.shape
    if spec in ("wrong", "wrong-judge"):
        p = (p_model if spec == "wrong" else p_judge).clone()
        p[torch.arange(n), labels] = -1.0
        return torch.arange(n), p.argmax(1)
    if spec == "true":
        return torch.arange(n), labels.clone()
    if spec == "all":
        pairs = [(i, c) for i in range(n) for c in range(k) if c != int(labels[i])]
        return torch.tensor([i for i, _ in pairs]), torch.tensor([c for _, c in pairs])
    return torch.arange(n), torch.full((n,), int(spec), dtype=torch.long)


def load_judge(spec, evalnet, num_classes: int, shape, device):
    """(judge network in eval mode, its description): the evaluation network, or any run /
    checkpoint the loader accepts, which must take the same inputs and classes."""
    if spec is None:
        return evalnet.net, evalnet.description
    net, cfg, info = load_model(spec, device=device)
    got = data_info(cfg.data)
    if got["num_classes"] != num_classes:
        raise DualatError(f"judge {spec} has {got['num_classes']} classes, the explained model {num_classes}; "
                          "give a judge trained on the same classes")
    if tuple(got["shape"]) != tuple(shape):
        raise DualatError(f"judge {spec} takes inputs of shape {tuple(got['shape'])}, the explained model "
                          f"{tuple(shape)}")
    return net.eval(), f"{info['checkpoint']} weights of {info['path']} (sha256 {info['sha256']})"


class Scorer:
    """Everything one set of P images (counterfactuals, or the inputs themselves) is measured by."""

    def __init__(self, model, judge, ext, ref, knn, aes, device):
        self.model, self.judge, self.ext, self.ref, self.knn, self.aes, self.device = (
            model, judge, ext, ref, knn, aes, device)

    def __call__(self, x_cf, x_in, targets, original) -> dict:
        """x_cf, x_in (P, C, H, W) in [0, 1]; targets, original (P,) classes."""
        tt = targets.view(-1, 1)
        pm, pj = probs(self.model, x_cf, 500, self.device), probs(self.judge, x_cf, 500, self.device)
        feats, _ = self.ext(x_cf)
        return {"flip_rate": float((pm.argmax(1) == targets).float().mean()),
                "target_prob": float(pm.gather(1, tt).mean()),
                "judge_flip_rate": float((pj.argmax(1) == targets).float().mean()),
                "judge_target_prob": float(pj.gather(1, tt).mean()), **closeness(x_cf, x_in),
                "fd": pooled_fd(feats, targets.numpy(), self.ref), "knn_ratio": self.knn(x_cf, targets),
                **im_scores(self.aes, x_cf, targets, original)}


def counterfactual_family(t: Target, o: CounterfactualOptions, out=None) -> dict:
    """{'counterfactuals': {...per radius...}, 'counterfactuals_protocol': text}; with `out`, the
    counterfactuals themselves go to out/counterfactuals.npz (explain's format)."""
    cfg, test_set, show, dev = t.cfg, t.test_set, t.show_progress, t.device
    shape, k = tuple(test_set.shape), test_set.num_classes
    if len(shape) != 3:
        return {"counterfactuals_skipped": f"{cfg.data.name} is not image data"}
    check_counterfactual_options(o, k)
    if not hasattr(test_set, "y"):
        raise DualatError(f"the counterfactual family needs an in-memory labelled test set; {cfg.data.name} is not one")
    ext = make_extractor("evalnet", cfg.data, cfg.eval.evalnet, cfg.eval.evalnet_iterations, device=dev,
                         show_progress=show)
    judge, judge_desc = load_judge(o.judge, ext, k, shape, dev)
    judge_acc = clean_accuracy(judge, test_set)
    idx = balanced_indices(test_set.y, o.cf_n, k)
    x, y = test_set.batch(idx)
    p0 = probs(t.model, x, 500, dev)
    pair, targets = choose_targets(o.cf_target, y, p0, probs(judge, x, 500, dev))
    radii = o.radii or run_radii(cfg, shape)
    e = explain(t.model, x[pair], targets, radii, o.cf_steps, batch_size=256, show_progress=show,
                autocast=t.autocast)
    t.dtypes["counterfactuals"] = t.dtype
    t.dtypes["counterfactual_metrics"] = FLOAT32
    if out is not None:
        save_counterfactuals(out / "counterfactuals.npz", x, y, pair, e, p0)
    # the real images of each class: the test images that are not inputs
    rest = torch.ones(len(test_set), dtype=torch.bool)
    rest[idx] = False
    ref_x, ref_y = test_set.batch(rest.nonzero().view(-1))
    ref = class_stats(ext(ref_x, show, "reference features (evalnet)")[0], ref_y.numpy())
    knn = KNNRatio(ref_x, ref_y, o.cf_k)
    aes, ae_path = load_autoencoders(cfg.data, o.ae_iterations, show)
    score = Scorer(t.model, judge, ext, ref, knn, aes, dev)
    x_in, original = x[pair], p0.argmax(1)[pair]
    rows = [{"radius": 0.0, **score(x_in, x_in, targets, original)}]
    rows += [{"radius": float(r), **score(e.counterfactuals[i], x_in, targets, original)} for i, r in enumerate(radii)]
    # the floor of the FD and k-NN ratio: as many real training images of each target class
    train_set = load_split(cfg.data, "train")
    counts = torch.bincount(targets, minlength=k)
    floor_x, floor_y = train_set.batch(torch.cat([(train_set.y == c).nonzero().view(-1)[:int(counts[c])]
                                                  for c in range(k)]))
    fd_floor = pooled_fd(ext(floor_x)[0], floor_y.numpy(), ref)
    res = {"radii": [float(r) for r in radii], "n_images": len(idx), "n_pairs": len(pair), "target": str(o.cf_target),
           "steps": o.cf_steps, "judge": judge_desc, "judge_clean_acc": judge_acc, "fd_floor": fd_floor,
           "knn_ratio_floor": knn(floor_x, floor_y), "knn_k": o.cf_k, "autoencoders": str(ae_path), "rows": rows}
    return {"counterfactuals": res, "counterfactuals_protocol": protocol(o, res, len(test_set), t.weights)}


def protocol(o: CounterfactualOptions, res: dict, n_test: int, weights: str) -> str:
    target = {"wrong": "the explained model's most likely class other than the label",
              "wrong-judge": "the judge's most likely class other than the label (the same for every model)",
              "true": "the label", "all": "every class but the label"}.get(res["target"], f"class {res['target']}")
    return (f"{res['n_images']} class-balanced test images (the first of each class, at most half of a class), "
            f"target = {target} "
            f"({res['n_pairs']} counterfactuals per radius); counterfactuals by dualat explain's targeted PGD on log "
            f"p(target|x), {res['steps']} steps of 5 x radius / steps inside each L2 ball and [0,1], radii "
            f"{', '.join(f'{r:g}' for r in res['radii'])}; radius 0 = the inputs themselves; {weights}. "
            f"flip_rate / target_prob: argmax = target and mean p(target) under the explained model; judge_*: the same "
            f"under the judge, {res['judge']}, clean accuracy {res['judge_clean_acc']:.4f} on the {n_test} test "
            f"images; "
            f"l2, l1: mean distance to the input; changed_frac: mean fraction of pixels changed by more than {CHANGED} "
            f"in some channel; fd: Frechet distance in evaluation-network features between the counterfactuals toward "
            f"class c and the test images of class c that are not inputs, averaged over c weighted by the number of "
            f"counterfactuals toward c (classes with < 2 skipped), NOT an FID; fd_floor: the same for as many real "
            f"training images per class; knn_ratio: mean distance (pixels, L2) to the {res['knn_k']} nearest real "
            f"images of the target class / the class's own mean real-to-real {res['knn_k']}-NN distance (floor: real "
            f"training images); im1 = ||x'-AE_t(x')||^2 / (||x'-AE_o(x')||^2 + {IM_EPS:g}), im2 = "
            f"||AE_t(x')-AE(x')||^2 / (||x'||_1 + {IM_EPS:g}) (Van Looveren & Klaise 2021; o = the explained model's "
            f"prediction of the input; autoencoders {res['autoencoders']}); lower is better for both")


def format_counterfactuals(result: dict) -> list[str]:
    """The table of `dualat eval`'s printout: one row per number, one column per radius (0 = inputs)."""
    c = result.get("counterfactuals")
    if not c:
        return []
    lines = [f"{'radius':<18}" + "".join(f"{'inputs' if r['radius'] == 0 else format(r['radius'], 'g'):>10}"
                                         for r in c["rows"])]
    lines += [f"{key:<18}" + "".join(f"{r[key]:>10.4f}" for r in c["rows"]) for key in ROW_KEYS]
    return lines + [f"judge clean accuracy {c['judge_clean_acc']:.4f}; fd_floor {c['fd_floor']:.4f}; "
                    f"knn_ratio_floor {c['knn_ratio_floor']:.4f}"]


__all__ = ["counterfactual_family", "check_counterfactual_options", "format_counterfactuals", "parse_radii",
           "balanced_indices", "choose_targets", "TARGETS", "ROW_KEYS"]
