"Packaging for qdora_lab: metadata comes from settings.ini; kernel sources in kernels/ (CUDA, and the CPU's C++) ship as qdora_lab.kernels."
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def _split(key):
    "Whitespace-separated list from settings.ini (empty when missing)."
    return cfg.get(key, '').split()

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
lic = licenses[cfg['license']]
console_scripts = [s for s in _split('console_scripts')]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license=lic[0],
    classifiers=['Programming Language :: Python :: 3', 'License :: ' + lic[1],
                 'Intended Audience :: ' + cfg['audience'].title()],
    url=cfg['git_url'],
    keywords=cfg['keywords'],
    python_requires='>=' + cfg['min_python'],
    packages=['qdora_lab', 'qdora_lab.kernels'],
    package_dir={'qdora_lab': 'qdora_lab', 'qdora_lab.kernels': 'kernels'},
    package_data={'qdora_lab.kernels': ['*.cu', '*.cuh', '*.cpp']},
    include_package_data=True,
    install_requires=_split('requirements'),
    extras_require={'dev': _split('dev_requirements'), 'cuda': _split('cuda_requirements')},
    entry_points={'console_scripts': console_scripts,
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
