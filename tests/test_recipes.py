"""Recipe stages: a second stage continues the first stage's best model and replaces its bundle."""
import json

from engine.build.recipes import RUNS, bundle_of, final_stage, stages, train_args


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_second_stage_continues_the_first_and_builds_its_bundle():
    assert stages("bert-qa-2") == ["bert-qa", "bert-qa-2"] and stages("bert-sentiment") == ["bert-sentiment"]
    assert bundle_of("bert-qa-2") == "bert-qa" and bundle_of("bert-qa-3") == "bert-qa"
    assert stages("bert-qa-3") == ["bert-qa", "bert-qa-2", "bert-qa-3"]
    assert value(train_args("bert-qa-3"), "--base") == str(RUNS / "bert-qa-2" / "best")
    args = train_args("bert-qa-2")
    assert value(args, "--base") == str(RUNS / "bert-qa" / "best")
    assert value(args, "--out") == str(RUNS / "bert-qa-2")
    assert "--base" not in train_args("bert-qa")
    student = train_args("squeezebert-qa-2")
    assert value(student, "--student-init") == str(RUNS / "squeezebert-qa" / "best")
    assert value(student, "--teacher") == str(RUNS / "bert-qa-3" / "best") and "--reconstruct" not in student


def test_students_learn_from_the_last_stage_of_their_teacher_unless_pinned():
    # the QA student's first eleven stages learnt from bert-qa-3, also those trained while bert-qa-4 was training;
    # the later ones are pinned to bert-qa-6
    for stage in stages("squeezebert-qa-11"):
        assert value(train_args(stage), "--teacher") == str(RUNS / "bert-qa-3" / "best")
    for stage in stages(final_stage("squeezebert-qa"))[11:]:
        assert value(train_args(stage), "--teacher") == str(RUNS / "bert-qa-6" / "best")
    assert final_stage("bert-qa") == "bert-qa-6"
    args = train_args("squeezebert-qa")
    # the QA student is cut from its teacher and refitted, not started from the task-agnostic encoder
    assert "--student-init" not in args and value(args, "--reconstruct") == "128"
    sentiment = train_args("squeezebert-sentiment")
    assert value(sentiment, "--teacher") == str(RUNS / "bert-sentiment" / "best")
    assert value(sentiment, "--student-init") == str(RUNS / "squeeze-general" / "best")
    assert value(train_args("squeezebert-qa", "runs/x"), "--student-init") == "runs/x"


def test_model_card_shows_every_stage_command():
    from engine.build.model_card import short_recipe

    recipe = ("python -m engine.build.recipes bert-qa   # = python -m engine.build.train --lr 1e-4"
              " && python -m engine.build.recipes bert-qa-2   # = python -m engine.build.train --lr 5e-5")
    assert short_recipe(recipe) == "python -m engine.build.recipes bert-qa && python -m engine.build.recipes bert-qa-2"


def test_totals_of_lost_runs_come_from_the_bundle_they_made(tmp_path):
    from engine.build.recipes import shipped_totals

    manifest = tmp_path / "manifest.json"
    assert shipped_totals(manifest, "bert-qa-5") is None  # no bundle yet
    recipe = ("python -m engine.build.recipes bert-qa   # = python -m engine.build.train --lr 1e-4"
              " && python -m engine.build.recipes bert-qa-5   # = python -m engine.build.train --lr 3e-5")
    manifest.write_text(json.dumps({"recipe": recipe, "scores": {"training_minutes": 391.9, "training_steps": 9011}}))
    assert shipped_totals(manifest, "bert-qa-5") == {"minutes": 391.9, "steps": 9011}
    # the bundle was made by another stage (bert-qa-5 is not its last): its totals would be wrong for bert-qa-6
    assert shipped_totals(manifest, "bert-qa-4") is None and shipped_totals(manifest, "bert-qa") is None


def test_stage_totals_count_lost_runs_once_from_the_bundle_being_replaced(tmp_path):
    from engine.build.recipes import stage_totals

    manifest = tmp_path / "manifest.json"
    recipe = "python -m engine.build.recipes s-1   # = ... && python -m engine.build.recipes s-2   # = ..."
    manifest.write_text(json.dumps({"recipe": recipe, "scores": {"training_minutes": 100.0, "training_steps": 900}}))
    run = lambda minutes: {"minutes": minutes, "steps": 10}  # noqa: E731
    chain = ["s", "s-1", "s-2", "s-3", "s-4"]
    everything = {"s": run(1), "s-1": run(2), "s-2": run(3), "s-3": run(4), "s-4": run(5)}
    assert stage_totals(chain, everything, manifest) == list(everything.values())  # all runs here: the runs count
    bundle = {"minutes": 100.0, "steps": 900}
    # re-exporting the stage that made the bundle, its earlier runs gone: the bundle's totals, nothing added
    assert stage_totals(chain[:3], {"s": None, "s-1": None, "s-2": run(3)}, manifest) == [bundle]
    # going on past a stage that was never shipped (s-3): the bundle's totals plus every later run
    lost_first = {"s": None, "s-1": None, "s-2": run(3), "s-3": run(4), "s-4": run(5)}
    assert stage_totals(chain, lost_first, manifest) == [bundle, run(4), run(5)]
    # a run after the bundle's stage is gone too: only what is here (an undercount, never a double count)
    assert stage_totals(chain, {**lost_first, "s-3": None}, manifest) == [run(3), run(5)]


def test_a_stage_can_go_on_from_the_previous_stages_last_step():
    from engine.build.recipes import FROM_LAST

    for stage in FROM_LAST:
        previous = stages(stage)[-2]
        assert value(train_args(stage), "--student-init") == str(RUNS / previous / "last")
    assert value(train_args("squeezebert-qa-12"), "--student-init") == str(RUNS / "squeezebert-qa-11" / "best")
