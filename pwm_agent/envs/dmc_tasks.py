"""dm_control tasks of the MT30 set: the 19 standard ones and 11 custom ones written here.

The custom tasks reuse dm_control's domains (models and physics) with new rewards;
their definitions are this project's own, written from the task names' descriptions:

| task | reward (each factor in [0, 1], dm_control's ``tolerance``) |
|---|---|
| walker-walk/run-backwards | walker's stand reward x speed *backwards* >= 1 / 8 m/s |
| cheetah-run-backwards | speed backwards >= 10 m/s (linear from 0) |
| cheetah-run-front | speed >= 5 m/s x back foot lifted >= 0.45 m (running on the front legs) |
| cheetah-run-back | speed >= 5 m/s x front foot lifted >= 0.45 m (running on the back legs) |
| cheetah-jump | torso height >= 1.0 m (margin 0.4) |
| hopper-hop-backwards | hopper's standing x speed backwards >= 2 m/s |
| reacher-three-easy/hard | a three-link reacher (links 0.08 m) touching a 0.05 / 0.015 m target |
| pendulum-spin | angular speed >= 8 rad/s, either direction (0 below 4 rad/s) |
| cup-spin | the ball's speed around the cup (tangential) >= 2 m/s (0 below 1 m/s) |

dm_control is imported only when a task is built (the ``dmc`` extra).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["make_dm_env"]

_RENAMED_DOMAINS = {"cup": "ball_in_cup"}
_NO_TIME_LIMIT = float("inf")  # the Gymnasium TimeLimit truncates episodes


def _standard(name: str, random: Any) -> Any:
    from dm_control import suite

    domain, _, task = name.partition("-")
    domain = _RENAMED_DOMAINS.get(domain, domain)
    task = task.replace("-", "_")
    if (domain, task) not in suite.ALL_TASKS:
        raise KeyError(name)
    return suite.load(domain, task, task_kwargs={"random": random, "time_limit": _NO_TIME_LIMIT})


def _environment(physics: Any, task: Any, control_timestep: float | None = None) -> Any:
    from dm_control.rl import control

    kwargs = {"control_timestep": control_timestep} if control_timestep else {}
    return control.Environment(physics, task, time_limit=_NO_TIME_LIMIT, **kwargs)


def _negated(physics_cls: type, method: str) -> type:
    """A physics class whose ``method`` (a speed) returns its negative: a backwards task."""

    def backwards(self: Any) -> Any:
        return -getattr(physics_cls, method)(self)

    return type(f"Backwards{physics_cls.__name__}", (physics_cls,), {method: backwards})


def _walker_backwards(speed_name: str) -> Callable[[Any], Any]:
    def make(random: Any) -> Any:
        from dm_control.suite import walker

        physics = _negated(walker.Physics, "horizontal_velocity").from_xml_string(*walker.get_model_and_assets())
        task = walker.PlanarWalker(move_speed=getattr(walker, speed_name), random=random)
        return _environment(physics, task, walker._CONTROL_TIMESTEP)

    return make


def _cheetah_backwards(random: Any) -> Any:
    from dm_control.suite import cheetah

    physics = _negated(cheetah.Physics, "speed").from_xml_string(*cheetah.get_model_and_assets())
    return _environment(physics, cheetah.Cheetah(random=random))


def _cheetah_variant(kind: str) -> Callable[[Any], Any]:
    def make(random: Any) -> Any:
        from dm_control.suite import cheetah
        from dm_control.utils import rewards

        class Variant(cheetah.Cheetah):
            def get_reward(self, physics: Any) -> float:
                z = physics.named.data.xpos
                if kind == "jump":
                    return float(rewards.tolerance(z["torso", "z"], (1.0, float("inf")), margin=0.4,
                                                   value_at_margin=0, sigmoid="linear"))
                run = rewards.tolerance(physics.speed(), (5.0, float("inf")), margin=5.0, value_at_margin=0,
                                        sigmoid="linear")
                foot = "bfoot" if kind == "front" else "ffoot"
                lifted = rewards.tolerance(z[foot, "z"], (0.45, float("inf")), margin=0.25, value_at_margin=0,
                                           sigmoid="linear")
                return float(run * lifted)

        physics = cheetah.Physics.from_xml_string(*cheetah.get_model_and_assets())
        return _environment(physics, Variant(random=random))

    return make


def _hopper_backwards(random: Any) -> Any:
    from dm_control.suite import hopper

    physics = _negated(hopper.Physics, "speed").from_xml_string(*hopper.get_model_and_assets())
    return _environment(physics, hopper.Hopper(hopping=True, random=random), hopper._CONTROL_TIMESTEP)


def _three_link_reacher_xml() -> tuple[str, dict[str, Any]]:
    """dm_control's reacher with a third link (three hinge joints, three motors)."""
    from dm_control.suite import reacher

    xml, assets = reacher.get_model_and_assets()
    xml = xml.decode() if isinstance(xml, bytes) else xml
    arm_start, arm_end = xml.index('<body name="arm"'), xml.index("<!-- Target -->")
    arm = """<body name="arm" pos="0 0 .01">
      <geom name="arm" type="capsule" fromto="0 0 0 0.08 0 0" size=".01" material="self"/>
      <joint name="shoulder"/>
      <body name="hand" pos=".08 0 0">
        <geom name="hand" type="capsule" fromto="0 0 0 0.07 0 0" size=".01" material="self"/>
        <joint name="wrist" limited="true" range="-160 160"/>
        <body name="hand2" pos=".08 0 0">
          <geom name="hand2" type="capsule" fromto="0 0 0 0.07 0 0" size=".01" material="self"/>
          <joint name="finger_joint" limited="true" range="-160 160"/>
          <body name="finger" pos=".08 0 0">
            <geom name="finger" type="sphere" size=".01" material="effector"/>
          </body>
        </body>
      </body>
    </body>
    """
    xml = xml[:arm_start] + arm + xml[arm_end:]
    xml = xml.replace('<motor name="wrist" joint="wrist"/>',
                      '<motor name="wrist" joint="wrist"/>\n    <motor name="finger_joint" joint="finger_joint"/>')
    return xml, assets


def _reacher_three(target_size_name: str) -> Callable[[Any], Any]:
    def make(random: Any) -> Any:
        from dm_control.suite import reacher

        physics = reacher.Physics.from_xml_string(*_three_link_reacher_xml())
        return _environment(physics, reacher.Reacher(target_size=getattr(reacher, target_size_name), random=random))

    return make


def _pendulum_spin(random: Any) -> Any:
    from dm_control.suite import pendulum
    from dm_control.utils import rewards

    class Spin(pendulum.SwingUp):
        def get_reward(self, physics: Any) -> float:
            speed = abs(float(physics.angular_velocity()[0]))
            return float(rewards.tolerance(speed, (8.0, float("inf")), margin=4.0, value_at_margin=0,
                                           sigmoid="linear"))

    physics = pendulum.Physics.from_xml_string(*pendulum.get_model_and_assets())
    return _environment(physics, Spin(random=random))


def _cup_spin(random: Any) -> Any:
    from dm_control.suite import ball_in_cup
    from dm_control.utils import rewards

    class Spin(ball_in_cup.BallInCup):
        def get_reward(self, physics: Any) -> float:
            qpos, qvel = physics.named.data.qpos, physics.named.data.qvel
            rel = np.array([qpos["ball_x"] - qpos["cup_x"], qpos["ball_z"] - qpos["cup_z"]]).ravel()
            vel = np.array([qvel["ball_x"] - qvel["cup_x"], qvel["ball_z"] - qvel["cup_z"]]).ravel()
            # speed of the ball around the cup (tangential to the cup-ball line)
            tangential = abs(rel[0] * vel[1] - rel[1] * vel[0]) / max(float(np.linalg.norm(rel)), 1e-6)
            return float(rewards.tolerance(tangential, (2.0, float("inf")), margin=1.0, value_at_margin=0,
                                           sigmoid="linear"))

    physics = ball_in_cup.Physics.from_xml_string(*ball_in_cup.get_model_and_assets())
    return _environment(physics, Spin(random=random), ball_in_cup._CONTROL_TIMESTEP)


CUSTOM: dict[str, Callable[[Any], Any]] = {
    "walker-walk-backwards": _walker_backwards("_WALK_SPEED"),
    "walker-run-backwards": _walker_backwards("_RUN_SPEED"),
    "cheetah-run-backwards": _cheetah_backwards,
    "cheetah-run-front": _cheetah_variant("front"),
    "cheetah-run-back": _cheetah_variant("back"),
    "cheetah-jump": _cheetah_variant("jump"),
    "hopper-hop-backwards": _hopper_backwards,
    "reacher-three-easy": _reacher_three("_BIG_TARGET"),
    "reacher-three-hard": _reacher_three("_SMALL_TARGET"),
    "pendulum-spin": _pendulum_spin,
    "cup-spin": _cup_spin,
}


def make_dm_env(name: str, random: Any = None) -> Any:
    """The dm_control environment of MT30 task ``name`` (no time limit: the caller truncates)."""
    if name in CUSTOM:
        return CUSTOM[name](random)
    try:
        return _standard(name, random)
    except KeyError:
        raise ValueError(f"{name!r} is not a dm_control task of MT30.") from None
