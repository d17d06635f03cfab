rule prepare_data:
    input:
        source_files(),
    output:
        data="resources/datasets/{dataset}.npz",
        checksum="resources/datasets/{dataset}.npz.sha256",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        source=data_source_flags(),
    shell:
        "python -m skipinit prepare-data {params.source} "
        "--name {wildcards.dataset} --out {output.data} > {log} 2>&1"


# A few milliseconds: on a cluster it runs where Snakemake runs, not as a job of its own.
localrules:
    check_sizes,


rule check_sizes:
    input:
        dataset_file(),
    output:
        "results/{name}/logs/dataset_sizes.ok",
    log:
        "results/{name}/logs/check_sizes.log",
    benchmark:
        "results/{name}/benchmarks/check_sizes.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dataset=config["dataset"],
        requirements=size_needs,
    shell:
        "python -m skipinit check-sizes --dataset {input} --name {params.dataset} "
        "--requirements {params.requirements:q} --out {output} > {log} 2>&1"


# ImageNet's 1.28 M files listed once, for every job that trains on them (skipinit.data.imagenet).
rule list_imagenet:
    input:
        imagenet_root(),
    output:
        "resources/datasets/imagenet.listing.npz",
    log:
        "logs/list_imagenet.log",
    benchmark:
        "benchmarks/list_imagenet.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m skipinit list-imagenet --root {input:q} --out {output} > {log} 2>&1"
