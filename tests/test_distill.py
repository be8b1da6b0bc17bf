"""Knowledge distillation in the training loop: the loss against its formula, alpha 0 as plain
cross-entropy, a frozen copy of the teacher, and the checks on bad settings."""
import copy

import pytest
import torch

from gwkcuda import train
from gwkcuda.models import build_model


def _models(digits_model):
    model, x, y = digits_model
    torch.manual_seed(1)
    teacher = build_model("digits_cnn")
    train.train(teacher, x[512:1024], y[512:1024], epochs=1, lr=3e-3)
    return copy.deepcopy(model), teacher, x[:64], y[:64]


@pytest.mark.parametrize("alpha, temperature", [(0.5, 4.0), (1.0, 2.0), (0.25, 1.0)])
def test_loss_equals_the_formula(digits_model, alpha, temperature):
    student, teacher, x, y = _models(digits_model)
    # Independent of the loop: softmax and logs written out, on a copy in train mode (batch statistics).
    with torch.no_grad():
        s = copy.deepcopy(student).train()(x).double()
        t = teacher.eval()(x).double()
    p_t = torch.softmax(t / temperature, -1)
    log_p_s = torch.log(torch.softmax(s / temperature, -1))
    kl = (p_t * (torch.log(p_t) - log_p_s)).sum(-1).mean()
    ce = -torch.log(torch.softmax(s, -1))[torch.arange(len(y)), y].mean()
    expected = (1 - alpha) * ce + alpha * temperature ** 2 * kl
    losses = train.train(student, x, y, epochs=1, lr=0.0, batch=64,
                         distill=train.Distillation(teacher, alpha, temperature))
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)


def test_alpha_zero_is_cross_entropy_and_the_teacher_is_left_alone(digits_model):
    student, teacher, x, y = _models(digits_model)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plain = copy.deepcopy(student)
    a = train.train(plain, x, y, epochs=2, lr=1e-3, batch=32, seed=3)
    b = train.train(student, x, y, epochs=2, lr=1e-3, batch=32, seed=3, distill=train.Distillation(teacher, 0.0))
    assert a == pytest.approx(b, rel=1e-6)
    for (_, p), (_, q) in zip(plain.named_parameters(), student.named_parameters()):
        torch.testing.assert_close(p, q)
    assert all(p.requires_grad for p in teacher.parameters())  # the caller's teacher is not frozen
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_student_equal_to_its_teacher_has_no_soft_loss(digits_model):
    model, x, y = digits_model
    teacher = copy.deepcopy(model)
    distill = train.Distillation(teacher, 1.0, 3.0)
    logits = teacher.eval()(x[:50])
    assert float(distill.loss(logits, y[:50], x[:50]).detach()) == pytest.approx(0.0, abs=1e-6)


def test_bad_settings_are_refused_before_training(digits_model):
    model = digits_model[0]
    with pytest.raises(ValueError, match=r"expected alpha in \[0, 1\], got 1.5"):
        train.Distillation(model, 1.5)
    with pytest.raises(ValueError, match="expected temperature a finite number > 0, got 0"):
        train.Distillation(model, 0.5, 0)
    with pytest.raises(TypeError, match="expected a teacher nn.Module, got str"):
        train.Distillation("float.pt", 0.5)
    distill = train.Distillation(build_model("digits_cnn", num_classes=7), 0.5)
    with pytest.raises(ValueError, match=r"the teacher gave \[4, 7\] logits, the student \[4, 10\]"):
        distill.loss(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long), torch.zeros(4, 1, 8, 8))


def test_the_gwk_chain_distils_when_asked(digits_model, tmp_path):
    import dataclasses

    from gwkcuda import pipelines
    from gwkcuda.gwk import GWKConfig

    model = digits_model[0]
    task = pipelines.load_task("digits_cnn", "digits")
    task = dataclasses.replace(task, x_train=task.x_train[:256], y_train=task.y_train[:256])
    config = GWKConfig(d=4, k=16, importance="uniform", iters=5)
    plain = pipelines.run_gwk(model, task, tmp_path / "plain.gwk", config, epochs=1)
    kd = pipelines.run_gwk(model, task, tmp_path / "kd.gwk", config, epochs=1,
                           distill=train.Distillation(model, 0.7, 2.0))
    assert plain["settings"]["distill"] is None
    assert kd["settings"]["distill"] == {"alpha": 0.7, "temperature": 2.0}
    assert kd["details"]["finetune_losses"] != plain["details"]["finetune_losses"]
