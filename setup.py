from glob import glob

from setuptools import find_packages, setup

package_name = "alike_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "benchmarks"]),
    package_data={package_name: ["weights/*.pth", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", sorted(glob("config/*.yaml") + glob("config/*.xml"))),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="alike_ros maintainers",
    maintainer_email="maintainers@alike-ros.invalid",
    description="ALIKE learned local features for ROS 2",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "extractor = alike_ros.ros.node:main",
            "alike_extract = alike_ros.cli.extract:main",
            "alike_bag = alike_ros.bag.cli:main",
            "alike_train = alike_ros.training.cli:main",
            "alike_evaluate = alike_ros.evaluation.cli:main",
        ],
    },
)
