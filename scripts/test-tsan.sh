#!/usr/bin/env bash
# Builds index_test, http_test and collection_test with ThreadSanitizer in
# their own build directory and runs the concurrency tests under it: each
# index's searches beside writes and MIH's background table rebuilds; the
# collection's group commit with searches checked against brute force while
# four writers run, filtered searches beside upserts that change labels and
# codes together, and background index snapshots; and over HTTP concurrent
# inserts, searches, metrics, collection create/drop, keep-alive, graceful
# shutdown and a degraded collection's background rebuild, and a sharded
# collection of an in-process 3-node cluster (a real etcd) under concurrent
# writes, reads and a failover. The targets are torch-free, so only the
# store, the indexes, the collection layer and the service are built.
# Backups are left out: RocksDB's BackupEngine hands work to its own threads
# inside Debian's librocksdb, which is not built for TSan, so TSan cannot see
# that synchronisation and reports races inside the library.
#   bash scripts/test-tsan.sh                 # build dir: build-tsan/
#   BUILD_DIR=/tmp/tsan JOBS=1 bash scripts/test-tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-tsan}
JOBS=${JOBS:-$(nproc)}
FILTER=${FILTER:-'HttpServer.*:HttpApi.SearchMatchesBruteForce:HttpApi.ErrorPathsLeaveServerAndDataIntact:HttpCollection.IndexFailureAnswersWithAWarningServesDegradedAndRebuilds:HttpCollection.WritesRunOffTheIoThreadsAndTheQueueIsBounded:Cluster.ShardedCollectionUnderConcurrentWritesAndAFailover:Cluster.NodesCoordinatingAtOnceNeverWaitOnEachOtherInACircle:HttpClient.*'}

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAMDB_SANITIZE=thread \
  -DHAMDB_WITH_CUDA=OFF
cmake --build "$BUILD_DIR" --target index_test http_test collection_test -j "$JOBS"
# halt_on_error: any data race fails the run with a non-zero exit status.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
"$BUILD_DIR/tests/index_test" \
  --gtest_filter="${INDEX_FILTER:-*ConcurrentSearches*:MihIndexTest.WritesDuringBackgroundCompactions*:MihIndexTest.LongRebuildLogsAreReplayedUnderSharedLocks}"
"$BUILD_DIR/tests/collection_test" \
  --gtest_filter="${COLLECTION_FILTER:-LiveCollectionWrite.*:LiveCollectionSnapshot.*:*FilteredSearch.SearchesBesideWrites*:*FilteredSearch.UpsertsAreSeenWhole*}"
"$BUILD_DIR/tests/http_test" --gtest_filter="$FILTER"
echo "test-tsan: no data races reported"
