"""ESC networks, model, datasets and the ``basicsr`` command, as a plugin for PyPI's basicsr.

Install torch first, then basicsr without build isolation (its setup.py imports torch), then
this package; ``make demo`` / ``make test`` do all of it in ``.venv`` (see README.md).
"""
from setuptools import find_packages, setup

with open('README.md', encoding='utf-8') as readme:
    long_description = readme.read()

setup(
    name='esc-arch',
    version='0.1.0',
    description='ESC: Emulating Self-attention with Convolution for Efficient Image Super-Resolution, for BasicSR',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['esc_arch', 'esc_arch.*']),
    python_requires='>=3.11',
    install_requires=[
        # The one basicsr release the patches of esc_arch/compat/table.py were checked against (their guard
        # refuses another); torch 2.6 is the first whose weights_only loading is safe (CVE-2025-32434).
        'basicsr==1.4.2',
        'torch>=2.6',
        'torchvision',
        'opencv-python',
        'numpy',
        'lmdb',
        'pyyaml',
        'Pillow',
        'tqdm',
        'scikit-image',
    ],
    extras_require={
        'test': ['pytest', 'ruff'],
        'onnx': ['onnx', 'onnxruntime'],
        'spandrel': ['spandrel'],
        'bench': ['matplotlib'],
        'safetensors': ['safetensors'],
        'iqa': ['pyiqa>=0.1.16'],  # the paper's real-world metrics (esc_arch.metrics, docs/training.md)
        'video': ['imageio-ffmpeg'],  # basicsr upscale on videos (esc_arch/video.py)
    },
    entry_points={
        'console_scripts': ['basicsr = esc_arch.cli:main'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
)
