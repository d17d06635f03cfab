# skipinit: De & Smith (NeurIPS 2020) rebuilt from one command.
#   snakemake --cores all                                  # CPU default profile (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml   # tiny synthetic run of the whole DAG


# The default profile only when none is given: --configfile would otherwise be merged
# key by key into it, mixing two profiles' experiments.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The report's front page: what is reproduced, for which profile, where each claim's verdict and figure are.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/signal.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        report_targets(),
