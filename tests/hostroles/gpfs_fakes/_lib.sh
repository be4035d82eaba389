# Shared by the stand-ins of IBM Storage Scale's mm commands (tests/hostroles/test_gpfs_client.py).
# State in /etc/aiinfra-test/gpfs: cluster_name, kernel, mountpoint, members (one node per line),
# started, broken (GPFS down); every call is appended to log. The test tree is both the client and
# its admin node, so the admin's view (members) and the client's (/var/mmfs/gen/mmsdrfs) live side by side.
S=/etc/aiinfra-test/gpfs
CONFIG=/var/mmfs/gen/mmsdrfs
echo "$(basename "$0") $*" >> "$S/log"
