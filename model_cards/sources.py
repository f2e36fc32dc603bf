"""What each known chest X-ray source is: description, licence, population and citation.

Cards look data sets up here by the names the data builders use (`nih`, `kermany`, ...) and by the folder names of
the benchmark subsets (`nih_cxr14`, `kermany_pediatric`, ...). Other names are the user's own data (a training run
names a folder layout's data by its folder): `describe` says so, with what is known of them, instead of a source.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    title: str
    description: str
    licence: str
    population: str  # "adult", "pediatric" or "mixed"
    country: str
    citation: str
    # the terms let anyone use, adapt and share the data, commercially too, asking attribution at most (CC BY, CC0,
    # public domain, "no restrictions; cite"): a model of such data alone can carry the package's licence. False for
    # non-commercial, share-alike, credentialed or research-only terms and for terms not recorded in full.
    permissive: bool


_NIH = Source(
    "NIH ChestX-ray14",
    "Frontal CXRs of the NIH Clinical Center with 14 findings mined from reports by NLP (labels are noisy)",
    "released by the NIH Clinical Center without use restrictions; cite the authors",
    "adult", "USA",
    "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale chest X-ray database and "
    "benchmarks. CVPR 2017.",
    permissive=True,
)
_KERMANY = Source(
    "Kermany pediatric pneumonia",
    "Anterior-posterior CXRs of children aged 1-5, Guangzhou Women and Children's Medical Center; normal / pneumonia "
    "(bacterial or viral)",
    "CC BY 4.0",
    "pediatric", "China",
    "Kermany DS, Goldbaum M, et al. Identifying medical diagnoses and treatable diseases by image-based deep "
    "learning. Cell 2018;172(5):1122-1131.",
    permissive=True,
)
_COHEN = Source(
    "covid-chestxray-dataset",
    "CXRs of COVID-19 and other pneumonias collected from publications and websites; many are figure crops with "
    "arrows or letters",
    "per-image licences (see the set's metadata)",
    "mixed", "multinational",
    "Cohen JP, Morrison P, Dao L, et al. COVID-19 image data collection: prospective predictions are the future. "
    "MELBA 2020.",
    permissive=False,
)

SOURCES: dict[str, Source] = {
    "nih": _NIH,
    "nih_cxr14": _NIH,
    "chexpert": Source(
        "CheXpert",
        "CXRs of Stanford Hospital with 14 observations labelled from reports; uncertain labels kept distinct",
        "Stanford University CheXpert Dataset Research Use Agreement (non-commercial)",
        "adult", "USA",
        "Irvin J, Rajpurkar P, et al. CheXpert: A large chest radiograph dataset with uncertainty labels and expert "
        "comparison. AAAI 2019.",
        permissive=False,
    ),
    "mimic_cxr_jpg": Source(
        "MIMIC-CXR-JPG",
        "CXRs of the Beth Israel Deaconess Medical Center emergency department with CheXpert/NegBio labels",
        "PhysioNet Credentialed Health Data License 1.5.0 (credentialed access)",
        "adult", "USA",
        "Johnson AEW, Pollard TJ, et al. MIMIC-CXR-JPG, a large publicly available database of labeled chest "
        "radiographs. arXiv:1901.07042, 2019.",
        permissive=False,
    ),
    "padchest": Source(
        "PadChest",
        "CXRs of Hospital San Juan, Alicante, 16-bit PNG, report-derived labels (27% by radiologists)",
        "BIMCV-PadChest licence (CC BY-SA 4.0)",
        "mixed", "Spain",
        "Bustos A, Pertusa A, Salinas JM, de la Iglesia-Vaya M. PadChest: A large chest x-ray image dataset with "
        "multi-label annotated reports. Medical Image Analysis 2020;66:101797.",
        permissive=False,
    ),
    "vindr_cxr": Source(
        "VinDr-CXR",
        "Posterior-anterior CXRs of two Hanoi hospitals, DICOM, labelled by 3 (train) or 5 (test) radiologists",
        "PhysioNet credentialed access (PhysioNet Credentialed Health Data License 1.5.0)",
        "adult", "Vietnam",
        "Nguyen HQ, Lam K, Le LT, et al. VinDr-CXR: An open dataset of chest X-rays with radiologist's "
        "annotations. Scientific Data 2022;9:429.",
        permissive=False,
    ),
    "rsna_pneumonia": Source(
        "RSNA Pneumonia Detection Challenge",
        "NIH ChestX-ray14 images re-annotated by radiologists with pneumonia opacity boxes",
        "RSNA challenge terms (non-commercial research); NIH image terms apply",
        "adult", "USA",
        "Shih G, Wu CC, Halabi SS, et al. Augmenting the National Institutes of Health chest radiograph dataset with "
        "expert annotations of possible pneumonia. Radiology: AI 2019;1(1):e180041.",
        permissive=False,
    ),
    "covidx": Source(
        "COVIDx CXR",
        "Aggregate of public COVID-19 / pneumonia / normal CXR sources with a fixed test file",
        "mixed: each constituent source keeps its own licence",
        "mixed", "multinational",
        "Wang L, Lin ZQ, Wong A. COVID-Net: a tailored deep convolutional neural network design for detection of "
        "COVID-19 cases from chest X-ray images. Scientific Reports 2020;10:19549.",
        permissive=False,
    ),
    "kermany": _KERMANY,
    "kermany_pediatric": _KERMANY,
    "montgomery": Source(
        "Montgomery County CXR set",
        "CXRs of the Montgomery County (Maryland) TB programme with left and right lung masks",
        "public, released by the U.S. National Library of Medicine; cite the authors",
        "mixed", "USA",
        "Jaeger S, Candemir S, Antani S, et al. Two public chest X-ray datasets for computer-aided screening of "
        "pulmonary diseases. Quantitative Imaging in Medicine and Surgery 2014;4(6):475-477.",
        permissive=True,
    ),
    "shenzhen": Source(
        "Shenzhen CXR set",
        "CXRs of Shenzhen No. 3 People's Hospital (TB / normal) with third-party lung masks",
        "images public, released by the U.S. National Library of Medicine (cite the authors); the third-party lung "
        "masks' terms are not recorded here",
        "mixed", "China",
        "Jaeger S, Candemir S, Antani S, et al. Two public chest X-ray datasets for computer-aided screening of "
        "pulmonary diseases. Quantitative Imaging in Medicine and Surgery 2014;4(6):475-477.",
        permissive=False,
    ),
    "jsrt": Source(
        "JSRT with SCR masks",
        "12-bit digitised films of the Japanese Society of Radiological Technology; SCR lung, heart, clavicle masks",
        "JSRT database terms (research and education); SCR masks by Image Sciences Institute, Utrecht",
        "adult", "Japan",
        "Shiraishi J, et al. Development of a digital image database for chest radiographs with and without a lung "
        "nodule. AJR 2000;174:71-74. van Ginneken B, et al. Segmentation of anatomical structures in chest "
        "radiographs using supervised methods. Medical Image Analysis 2006;10:19-40.",
        permissive=False,
    ),
    "sample": Source(
        "cxrgm sample set",
        "16 real Kermany pediatric CXRs (8 normal, 8 bacterial pneumonia) plus one real adult chest CR from the "
        "pydicom-data test files; for smoke tests only",
        "Kermany images CC BY 4.0; the CR (a pydicom-data test file) MIT",
        "mixed", "China (the Kermany images; the CR's site is not stated)",
        _KERMANY.citation,
        permissive=True,
    ),
    "ieee8023_covid": _COHEN,
    "v7labs_covid_lungseg": Source(
        "V7 Labs COVID-19 lung segmentation",
        "Lung masks (both lungs incl. the retrocardiac lung) on covid-chestxray-dataset images",
        "masks CC BY 4.0; images keep their per-image licences",
        "mixed", "multinational",
        "V7 Labs. COVID-19 X-ray lung annotations, 2020. " + _COHEN.citation,
        permissive=False,
    ),
    "hannover_covid": Source(
        "Hannover COVID-19 CXRs",
        "AP and PA CXRs of COVID-19 patients of Hannover Medical School, with ICU and outcome offsets",
        "CC BY 3.0",
        "adult", "Germany",
        "Winther HB, et al. COVID-19 image repository. figshare 2020, doi:10.6084/m9.figshare.12275009.",
        permissive=True,
    ),
    "actualmed_covid": Source(
        "Actualmed COVID-19 CXRs",
        "CXRs from Actualmed / Universitat Jaume I collected by the COVID-Net team",
        "research use only",
        "adult", "Spain",
        "Wang L, Lin ZQ, Wong A. COVID-Net. Scientific Reports 2020;10:19549.",
        permissive=False,
    ),
    "figure1_covid": Source(
        "Figure 1 COVID-19 CXRs",
        "CXRs shared on the Figure 1 app, many photographed from monitors (low quality)",
        "research use only",
        "mixed", "multinational",
        "Wang L, Lin ZQ, Wong A. COVID-Net. Scientific Reports 2020;10:19549.",
        permissive=False,
    ),
}


# builders whose data are the folders they pool (each named on the cards where known), not a source of their own
POOLING_BUILDERS = ("cxr_pool",)


def lookup(name: str) -> Source | None:
    """The source of a data set name (case and `-` vs `_` ignored), or None when unknown."""
    return SOURCES.get(str(name).strip().lower().replace("-", "_"))


def code(name) -> str:
    """`name` as Markdown inline code on one line (whitespace runs as one space, backticks as '): a list of such names
    reads unambiguously where one holds a comma ("Pneumonia, viral")."""
    return "`" + " ".join(str(name).split()).replace("`", "'") + "`"


def describe(name, num_images=None, builder=None) -> str:
    """The card's "Source" text for a data set name: "<title>: <description>" for a known source, else what can be
    said of local data, e.g. "local data `my_cxrs` read by the `imagefolder` builder (120 images); not one of the
    public sets this package describes, so its origin, population and licence are not recorded". A pooling
    builder's name (`cxr_pool`, named where the folders it pooled are not recorded) is no data set: the text says
    that the folders are unknown."""
    source = lookup(name)
    if source:
        return f"{source.title}: {source.description}"
    label = " ".join(str(name or "").split()).replace("`", "'").replace("|", "\\|")
    if not label:
        return "not recorded"
    count = f" ({num_images} image{'' if num_images == 1 else 's'})" \
        if isinstance(num_images, int) and not isinstance(num_images, bool) else ""
    if label in POOLING_BUILDERS:
        return (f"images{count} pooled by the `{label}` builder from folders that were not recorded (no `folders` "
                "option, and the images' paths were not read back), so their sources, population and licence are "
                "not known")
    text = f"local data `{label}`"
    if builder and str(builder) != label:
        text += f" read by the `{' '.join(str(builder).split())}` builder"
    return text + count + "; not one of the public sets this package describes, so its origin, population and " \
                          "licence are not recorded"
