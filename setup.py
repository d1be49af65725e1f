"""Packaging for pwm_agent."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
for line in (HERE / "pwm_agent" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=")[1].strip().strip('"')

# dm_control 1.0.50 fails on mujoco 4 (it needs the 3.17 series); gymnasium's MuJoCo
# tasks run on 3.17 as well, so the extras that include dm_control pin mujoco < 4.
DMC = ["dm-control>=1.0.20", "shimmy[dm-control]>=2.0", "mujoco>=3.17,<4"]

# Minari datasets (HDF5 and Arrow backends; reading and writing need no jax) and
# YAML config files of the command line.
OFFLINE = ["minari[hdf5,arrow]>=0.5.3,<0.6", "pyyaml>=6"]

# Contact-rich differentiable envs (NewtonAnt, NewtonHopper). newton 1.8 asks only for
# warp-lang>=1.17; the upper bound keeps a future warp 2 API out.
NEWTON = ["newton==1.8.*", "warp-lang>=1.17,<2"]

extras = {
    "test": [
        "pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "tensorboard>=2.14", "gymnasium[mujoco]>=1.0",
        *DMC, *OFFLINE, *NEWTON,
    ],
    "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    "mujoco": ["gymnasium[mujoco]>=1.0"],
    "dmc": ["gymnasium[mujoco]>=1.0", *DMC],
    "offline": OFFLINE,
    "benchmarks": ["matplotlib>=3.7", "gymnasium[mujoco]>=1.0"],
    "extra": ["tensorboard>=2.14", "matplotlib>=3.7", *OFFLINE],
    # metaworld 3.1 pins mujoco==3.3.0, which dm_control 1.0.50 cannot use: not with dmc/test.
    "metaworld": ["metaworld==3.1.1"],
    "newton": NEWTON,
}

setup(
    name="pwm_agent",
    version=version["v"],
    description="PWM (Policy learning with multi-task World Models) for Stable-Baselines3 and Gymnasium",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pwm_agent", "pwm_agent.*"]),
    package_data={"pwm_agent": ["py.typed", "pretrained/*.pt", "pretrained/*/*/*.npy", "pretrained/*/*/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.5",  # torch.serialization.safe_globals (pickle-free TD-MPC2 data)
        "gymnasium>=1.0",
        "stable-baselines3>=2.6",
        "numpy>=1.24",
        "tqdm",
        "rich",
        "cloudpickle",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["pwm-agent=pwm_agent.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    license="MIT",
)
