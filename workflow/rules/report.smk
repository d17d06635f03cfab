rule figure:
    input:
        runs="results/{name}/runs.parquet",
        curves="results/{name}/curves.parquet",
    output:
        png=report(
            "results/{name}/figures/{experiment}.png",
            caption="../report/experiment_figure.rst",
            category="Experiments",
            subcategory="{experiment}",
        ),
        pdf="results/{name}/figures/{experiment}.pdf",
    log:
        "results/{name}/logs/figure/{experiment}.log",
    benchmark:
        "results/{name}/benchmarks/figure/{experiment}.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        provenance=figure_provenance,  # for the caption; the figure states the same from runs.parquet
    shell:
        "python -m skipinit figure --runs {input.runs} --curves {input.curves} --experiment {wildcards.experiment} "
        "--png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule table:
    input:
        runs="results/{name}/runs.parquet",
        paper="config/paper_v1.yaml",
    output:
        md="results/{name}/tables/{experiment}.md",
        tex="results/{name}/tables/{experiment}.tex",
        csv=report(
            "results/{name}/tables/{experiment}.csv",
            caption="../report/experiment_table.rst",
            category="Experiments",
            subcategory="{experiment}",
        ),
    log:
        "results/{name}/logs/table/{experiment}.log",
    benchmark:
        "results/{name}/benchmarks/table/{experiment}.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m skipinit table --runs {input.runs} --experiment {wildcards.experiment} "
        "--paper {input.paper} --md {output.md} --tex {output.tex} --csv {output.csv} > {log} 2>&1"


rule claims:
    input:
        unpack(claims_inputs),
    output:
        json="results/{name}/claims.json",
        md=report(
            "results/{name}/claims.md",
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        "results/{name}/logs/claims.log",
    benchmark:
        "results/{name}/benchmarks/claims.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        signal=signal_flag,
    shell:
        "python -m skipinit claims --runs {input.runs} --curves {input.curves} {params.signal} "
        "--claims-config {input.claims:q} --json {output.json} --md {output.md} > {log} 2>&1"


rule scorecard:
    input:
        own="results/{name}/claims.json",
        references=scorecard_references,
        claims=config["claims"],
    output:
        md=report(
            "results/{name}/scorecard.md",
            caption="../report/scorecard.rst",
            category="Claims",
        ),
        html="results/{name}/scorecard.html",
    log:
        "results/{name}/logs/scorecard.log",
    benchmark:
        "results/{name}/benchmarks/scorecard.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m skipinit scorecard --claims {input.own:q} {input.references:q} "
        "--claims-config {input.claims:q} --out {output.md:q} > {log} 2>&1"
