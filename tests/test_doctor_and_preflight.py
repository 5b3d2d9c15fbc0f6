"""doctor's checks, each passing and failing the way it claims; the train job's preflight refusals
happen before any Spark task starts."""

import os

import pytest

from torchonspark.sparkjobs import doctor, train_resnet
from torchonspark.sparkjobs.doctor import (
    data_checks,
    check_gpu_scheduling,
    check_hadoop_conf,
    check_hdfs_client,
    check_hdfs_environment,
    check_java,
    check_versions,
    installed_versions,
)
from torchonspark.sparkjobs.cluster.preflight import PreflightError, check_dynamic_allocation, check_slots, preflight, task_slots

YARN_GPU = {
    "spark.master": "yarn",
    "spark.executor.instances": "4",
    "spark.executor.cores": "8",
    "spark.task.cpus": "8",
    "spark.executor.resource.gpu.amount": "1",
    "spark.task.resource.gpu.amount": "1",
    "spark.executor.resource.gpu.discoveryScript": "./get_gpus.sh",
}


def fake_java(tmp_path, version):
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2024-01-16\' >&2\n')
    java.chmod(0o755)
    return tmp_path / "jdk"


def test_java_is_found_and_its_version_checked(tmp_path):
    assert check_java(os.environ).ok
    assert check_java({"JAVA_HOME": str(fake_java(tmp_path / "a", "17.0.9"))}).ok
    assert check_java({"JAVA_HOME": str(fake_java(tmp_path / "b", "1.8.0_392"))}).detail.startswith("Java 8")
    too_new = check_java({"JAVA_HOME": str(fake_java(tmp_path / "c", "21.0.1"))})
    assert not too_new.ok and "Java 21" in too_new.detail and "Java 17" in too_new.fix
    missing = check_java({}, which=lambda name: None)
    assert not missing.ok and "no java found" in missing.line()


def test_versions_are_compared_with_the_tested_set():
    assert all(check.ok for check in check_versions(installed_versions()))
    failed = check_versions({"pyarrow": "15.0.0"}, {"pyarrow": "14.0.", "petastorm": "0.12.1"})
    assert [(c.name, c.ok) for c in failed] == [("pyarrow", False), ("petastorm", False)]
    assert "tested with 14.0.*" in failed[0].detail and "constraints.txt" in failed[0].fix


def test_hdfs_client_needs_java_hadoop_libhdfs_and_the_hadoop_classpath(tmp_path):
    assert "JAVA_HOME and HADOOP_HOME unset" in check_hdfs_environment({}).detail
    hadoop = tmp_path / "hadoop"
    (hadoop / "lib" / "native").mkdir(parents=True)
    env = {"JAVA_HOME": "/usr/lib/jvm/java-17", "HADOOP_HOME": str(hadoop)}
    assert "libhdfs.so not found" in check_hdfs_environment(env).detail
    (hadoop / "lib" / "native" / "libhdfs.so").write_bytes(b"")
    assert "no Hadoop jars" in check_hdfs_environment(env).detail
    ready = check_hdfs_environment({**env, "CLASSPATH": "/opt/hadoop/share/hadoop/common/*"})
    assert ready.ok and "libhdfs at" in ready.detail


def test_data_check_tells_missing_unconverted_unsupported_and_ready_apart(digits_parquet, tmp_path):
    output, _ = digits_parquet
    assert [c.ok for c in data_checks(str(output), os.environ)] == [True]
    assert "does not exist" in data_checks(str(tmp_path / "nothing"), os.environ)[-1].detail
    assert "not a converted data set" in data_checks(str(tmp_path), os.environ)[-1].detail
    assert "unsupported URL scheme" in data_checks("ftp://host/data", os.environ)[-1].detail
    no_namenode = data_checks("hdfs:///data/imagenet-parquet", {})
    assert [(c.name, c.ok) for c in no_namenode] == [("data", False)] and "HADOOP_CONF_DIR" in no_namenode[0].detail


def test_the_hdfs_client_is_hdfs_native_unless_libhdfs_is_asked_for():
    default = check_hdfs_client({})
    assert default.ok and default.detail.startswith("hdfs-native 0.14") and "libhdfs" in default.detail
    libhdfs = check_hdfs_client({"TORCHONSPARK_HDFS_CLIENT": "libhdfs"})
    assert not libhdfs.ok and "libhdfs, as TORCHONSPARK_HDFS_CLIENT asks: JAVA_HOME and HADOOP_HOME unset" in libhdfs.detail
    assert not check_hdfs_client({"TORCHONSPARK_HDFS_CLIENT": "webhdfs"}).ok


def test_the_hadoop_configuration_is_needed_for_yarn_and_default_filesystem_urls(tmp_path):
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:8020</value></property></configuration>")
    assert check_hadoop_conf({"HADOOP_CONF_DIR": str(tmp_path)}, needed=True).detail.endswith("(fs.defaultFS hdfs://nn:8020)")
    assert check_hadoop_conf({}, needed=False).ok
    missing = check_hadoop_conf({}, needed=True)
    assert not missing.ok and "export HADOOP_CONF_DIR=" in missing.fix


def test_gpu_scheduling_is_off_complete_or_missing_a_setting():
    assert all(c.ok for c in check_gpu_scheduling({"spark.master": "yarn"}, 0))
    assert all(c.ok for c in check_gpu_scheduling(YARN_GPU, 0))
    no_amount = {k: v for k, v in YARN_GPU.items() if k != "spark.executor.resource.gpu.amount"}
    assert "spark.executor.resource.gpu.amount 0" in check_gpu_scheduling(no_amount, 0)[-1].detail
    no_script = {k: v for k, v in YARN_GPU.items() if "discoveryScript" not in k}
    assert "get_gpus.sh" in check_gpu_scheduling(no_script, 0)[-1].fix


def test_task_slots_come_from_the_master_or_the_executor_settings():
    assert task_slots({"spark.master": "local[2]"}, False)[0] == 2
    assert task_slots({"spark.master": "local-cluster[2,3,1024]", "spark.task.cpus": "2"}, False)[0] == 2
    assert task_slots(YARN_GPU, True)[0] == 4
    assert task_slots({**YARN_GPU, "spark.task.cpus": "4"}, False)[0] == 8
    assert task_slots({**YARN_GPU, "spark.task.cpus": "4"}, True)[0] == 4  # one GPU per executor
    assert task_slots({"spark.master": "yarn"}, False)[0] == 2  # YARN's defaults: 2 executors of 1 core
    assert task_slots({"spark.master": "k8s://host"}, False)[0] is None
    assert task_slots({"spark.master": "k8s://host"}, False, registered_cores=12)[0] == 12
    assert check_slots(YARN_GPU, 4, True).ok and not check_slots(YARN_GPU, 5, True).ok
    unknown = check_slots({"spark.master": "k8s://host"}, 2, False)
    assert unknown.ok and "cannot count them yet" in unknown.detail and "spark.executor.instances" in unknown.detail


def test_dynamic_allocation_must_be_off():
    assert check_dynamic_allocation({}).ok
    on = check_dynamic_allocation({"spark.dynamicAllocation.enabled": "true"})
    assert not on.ok and "spark.dynamicAllocation.enabled=false" in on.fix


@pytest.mark.e2e
def test_doctor_passes_here_and_fails_for_too_many_workers(spark, digits_parquet, capsys):
    output, _ = digits_parquet
    assert doctor.main(["--data", str(output), "--workers", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("ok") for line in lines[:-1]) and lines[-1].endswith("checks passed")
    assert doctor.main(["--data", str(output), "--workers", "3"]) == 1
    assert "FAIL task slots: 3 barrier workers need 3 task slots at once, the cluster has 2" in capsys.readouterr().out


@pytest.mark.e2e
def test_train_refuses_more_workers_than_slots_before_any_task_starts(spark, digits_parquet, tmp_path, capsys):
    output, _ = digits_parquet
    tracker = spark.sparkContext.statusTracker()
    jobs_before = tracker.getJobIdsForGroup(None)
    recipe = os.path.join(os.path.dirname(__file__), "..", "conf", "digits.yaml")
    status = train_resnet.main(["--conf", recipe, "--data", str(output), "--output", str(tmp_path / "run"), "--workers", "3"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 barrier workers need 3 task slots at once, the cluster has 2" in err
    assert tracker.getJobIdsForGroup(None) == jobs_before
    assert not (tmp_path / "run").exists()


def test_preflight_refuses_dynamic_allocation_and_missing_slots():
    with pytest.raises(PreflightError, match="spark.dynamicAllocation.enabled is true"):
        preflight({**YARN_GPU, "spark.dynamicAllocation.enabled": "true"}, 4, True)
    with pytest.raises(PreflightError, match="8 barrier workers need 8 task slots at once, the cluster has 4"):
        preflight(YARN_GPU, 8, True)
    preflight(YARN_GPU, 4, True)


def test_yarn_room_counts_the_executors_a_job_holds_and_those_that_still_fit():
    from torchonspark.sparkjobs.cluster.preflight import check_yarn_room
    from torchonspark.sparkjobs.cluster.yarn import NodeRoom, YarnCapacity

    conf = {"spark.master": "yarn", "spark.executor.instances": "4", "spark.executor.cores": "2", "spark.executor.memory": "1g"}
    # an executor: 1024 MB heap + 384 MB overhead, 2 vcores; two nodes with room for one more each
    capacity = YarnCapacity([NodeRoom(2000, 3, 0), NodeRoom(1500, 2, 0)], job_executors=1)
    assert check_yarn_room(conf, 6, False, capacity).ok  # 3 executors of 2 slots: 1 held + 2 that fit
    refused = check_yarn_room(conf, 8, False, capacity)
    assert not refused.ok and "8 barrier workers need 4 executors of 1408 MB, 2 vcores; YARN gave this job 1 and has room for 2 more" in refused.detail
    assert refused.fix.startswith("use --workers 6, or ask for smaller executors")
    crowded = check_yarn_room(conf, 2, False, YarnCapacity([NodeRoom(500, 8, 0)], job_executors=6))  # one more than asked
    assert crowded.ok and "this job has 4" in crowded.detail
    full = check_yarn_room(conf, 2, False, YarnCapacity([NodeRoom(100, 0, 0)]))
    assert not full.ok and "--workers 0" not in full.fix and full.fix.startswith("ask for smaller executors")
    gpus = {**conf, "spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}
    assert "room for 0 more" in check_yarn_room(gpus, 2, True, YarnCapacity([NodeRoom(9000, 8, 0)])).detail
