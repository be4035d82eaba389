"""The host side of Kubernetes, rendered once into ``manifests/<env>/k8s-hosts/``.

- ``kubeadm-config.yaml``: ClusterConfiguration, InitConfiguration, JoinConfiguration and
  KubeletConfiguration for every node (pod/service CIDRs, the HA control-plane endpoint). The
  ``kubernetes`` role adds what exists only at run time (bootstrap token, CA hash, certificate
  key, the node's own address) and never writes them to disk outside /etc/kubernetes.
- ``nodes.yaml``: per node, the labels and taints it registers with
  (:mod:`aiinfra.render.k8s_topology`), as the kubelet's ``--node-labels``/``--register-with-taints``.
- ``cni-values.yaml``: values of the declared CNI's chart (Calico through tigera-operator, or
  Cilium), installed by the role on the first control-plane host: the pod network must exist
  before anything else (Argo CD included) can run.
- ``cluster.yml``: what the role needs to know of the cluster (versions, endpoint, hosts, chart).
"""

from __future__ import annotations

import json

from aiinfra.catalog.charts import CNI_CHARTS
from aiinfra.catalog.versions import version_tuple
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.mirror import site_chart, site_image
from aiinfra.render import Artifacts, renderer
from aiinfra.render.k8s_topology import kubernetes_hosts, node_labels, node_taints
from aiinfra.render.kubernetes import uses_kubernetes
from aiinfra.render.templates import dump_yaml, dump_yaml_documents
from aiinfra.spec.cluster import Cluster

CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
DNS_DOMAIN = "cluster.local"
CALICO_BLOCK_SIZE = 26  # Calico hands a node /26 blocks (64 pod addresses), more blocks as it needs them


def _header(cluster: Cluster, what: str) -> str:
    return f"# {what} of '{cluster.env}', rendered by aiinfra from {cluster.source}. Do not edit.\n"


def chart_version(cluster: Cluster, key: str) -> str:
    """The pinned version of chart ``key`` (:mod:`aiinfra.checks.platform` refuses a missing pin)."""
    return cluster.blueprint.versions.charts[key]


def kubernetes_version(cluster: Cluster) -> str:
    return (cluster.blueprint.versions.kubernetes or "").lstrip("v")


def control_plane_endpoint(cluster: Cluster) -> str:
    """``host:port`` every node and kubeconfig reaches the API at: the VIP, or the single
    control-plane host's management address (:mod:`aiinfra.checks.kubernetes` refuses several
    control-plane hosts without a VIP)."""
    k8s = cluster.blueprint.kubernetes
    control = cluster.hosts_with_role("k8s_control_plane")
    if k8s is not None and k8s.api_vip:
        return f"{k8s.api_vip}:{k8s.api_port}"
    port = k8s.api_port if k8s is not None else 6443
    return f"{cluster.hosts[control[0]].management_address}:{port}"


def _args(minor: tuple[int, int], args: dict[str, str]) -> list[dict[str, str]] | dict[str, str]:
    """kubeadm v1beta4 (Kubernetes 1.31+) lists extra args as name/value pairs; v1beta3 maps them."""
    if minor >= (1, 31):
        return [{"name": k, "value": v} for k, v in sorted(args.items())]
    return dict(sorted(args.items()))


KUBEADM_REGISTRY = "registry.k8s.io"  # kubeadm's default imageRepository


def kubeadm_documents(cluster: Cluster) -> list[dict]:
    bp = cluster.blueprint
    k8s = bp.kubernetes
    assert k8s is not None
    version = kubernetes_version(cluster)
    minor = version_tuple(version)[:2]
    api = "kubeadm.k8s.io/v1beta4" if minor >= (1, 31) else "kubeadm.k8s.io/v1beta3"
    endpoint = control_plane_endpoint(cluster)
    control = cluster.hosts_with_role("k8s_control_plane")
    sans = sorted({endpoint.rsplit(":", 1)[0], *control, *(cluster.hosts[h].management_address for h in control)})
    registration = {"criSocket": CRI_SOCKET, "imagePullPolicy": "IfNotPresent"}
    cluster_config = {
        "apiVersion": api,
        "kind": "ClusterConfiguration",
        "clusterName": bp.name,
        "kubernetesVersion": f"v{version}",
        "controlPlaneEndpoint": endpoint,
        "networking": {"podSubnet": k8s.pod_cidr, "serviceSubnet": k8s.service_cidr, "dnsDomain": DNS_DOMAIN},
        "apiServer": {"certSANs": sans, "extraArgs": _args(minor, {"profiling": "false"})},
        "controllerManager": {"extraArgs": _args(minor, {"profiling": "false", "terminated-pod-gc-threshold": "1000"})},
        "scheduler": {"extraArgs": _args(minor, {"profiling": "false"})},
        "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
    }
    if bp.mirror is not None and bp.mirror.registry:
        # kubeadm's images (kube-*, etcd, pause, CoreDNS) from the site registry, under their upstream
        # names. kubeadm appends /coredns to the repository of CoreDNS only when it is the default
        # registry.k8s.io (cmd/kubeadm/app/images/images.go GetDNSImage): name it explicitly.
        cluster_config["imageRepository"] = site_image(cluster, f"{KUBEADM_REGISTRY}/kube-apiserver").rsplit("/", 1)[0]
        cluster_config["dns"] = {"imageRepository": site_image(cluster, f"{KUBEADM_REGISTRY}/coredns")}
    init = {
        "apiVersion": api,
        "kind": "InitConfiguration",
        "nodeRegistration": registration,
        "skipPhases": ["addon/kube-proxy"] if k8s.cni == "cilium" else [],
    }
    join = {
        "apiVersion": api,
        "kind": "JoinConfiguration",
        "nodeRegistration": registration,
        "discovery": {"bootstrapToken": {"apiServerEndpoint": endpoint}},
    }
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": CRI_SOCKET,
        "serverTLSBootstrap": False,
        "rotateCertificates": True,
        "maxPods": 110,
        "shutdownGracePeriod": "60s",
        "shutdownGracePeriodCriticalPods": "20s",
    }
    return [cluster_config, init, join, kubelet]


def cni_values(cluster: Cluster) -> dict:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    if k8s.cni == "calico":
        return {
            "installation": {
                "kubernetesProvider": "",
                "cni": {"type": "Calico"},
                "calicoNetwork": {
                    "bgp": "Disabled",
                    "ipPools": [{"cidr": k8s.pod_cidr, "blockSize": CALICO_BLOCK_SIZE, "encapsulation": "VXLAN",
                                 "natOutgoing": "Enabled", "nodeSelector": "all()"}],
                },
                "controlPlaneTolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "apiServer": {"enabled": False},
        }
    host, port = control_plane_endpoint(cluster).rsplit(":", 1)
    return {
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": True,
        "k8sServiceHost": host,
        "k8sServicePort": int(port),
        "operator": {"replicas": 2},
        "tolerations": [{"operator": "Exists"}],
    }


def role_data(cluster: Cluster) -> dict:
    k8s = cluster.blueprint.kubernetes
    assert k8s is not None
    version = kubernetes_version(cluster)
    major, minor = version_tuple(version)[:2]
    cni = site_chart(cluster, CNI_CHARTS[k8s.cni])
    return {
        "kubernetes_version": version,
        "kubernetes_minor": f"{major}.{minor}",
        "control_plane_endpoint": control_plane_endpoint(cluster),
        "control_plane_hosts": cluster.hosts_with_role("k8s_control_plane"),
        "containerd_version": cluster.blueprint.versions.containerd or "",
        # containerd's pod sandbox: versions.images.pause as the site pulls it (the mirror's copy, where kubeadm's
        # imageRepository also points)
        "sandbox_image": site_image(cluster, cluster.blueprint.versions.images.get("pause", "")),
        "pod_cidr": k8s.pod_cidr,
        "service_cidr": k8s.service_cidr,
        "cni": {
            "name": k8s.cni,
            "chart": cni.reference,
            "repository": "" if cni.is_oci else cni.repository,
            "version": chart_version(cluster, cni.key),
            "release": cni.release,
            "namespace": cni.namespace,
        },
    }


def nodes_data(cluster: Cluster) -> dict:
    out = {}
    for name in kubernetes_hosts(cluster):
        labels = node_labels(cluster, name)
        taints = node_taints(cluster, name)
        out[name] = {"labels": labels, "taints": taints}
        state = cluster.groups[cluster.hosts[name].group].states.get(name)
        if state is not None:  # the kubernetes role annotates the node with it (NODE_STATE_REASON_ANNOTATION)
            out[name]["state_reason"] = state.reason
    return out


def nodes_yaml(cluster: Cluster) -> str:
    """One line per node (a JSON flow mapping, which YAML reads as is): fast for thousands of
    nodes, and a one-line diff when a node changes."""
    return "".join(f"{name}: {json.dumps(data, sort_keys=True, separators=(', ', ': '))}\n"
                   for name, data in nodes_data(cluster).items())


@renderer("k8s-hosts", "kubeadm configuration, node labels/taints and CNI values for the kubernetes role")
def render_k8s_hosts(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    if not uses_kubernetes(cluster) or cluster.blueprint.kubernetes is None:
        return {}
    return {
        "k8s-hosts/kubeadm-config.yaml": _header(cluster, "kubeadm configuration") + dump_yaml_documents(
            kubeadm_documents(cluster)),
        "k8s-hosts/nodes.yaml": _header(cluster, "Kubernetes node labels and taints") + nodes_yaml(cluster),
        "k8s-hosts/cni-values.yaml": _header(cluster, f"{cluster.blueprint.kubernetes.cni} chart values")
        + dump_yaml(cni_values(cluster)),
        "k8s-hosts/cluster.yml": _header(cluster, "Kubernetes facts for the kubernetes role") + dump_yaml(
            role_data(cluster)),
    }
