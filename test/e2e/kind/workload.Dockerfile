# The end-to-end suite's workload image (test/e2e/cmd/workload): backend,
# client. kind/run.sh builds it from a static binary, like ewgw's image.
FROM scratch
COPY workload /workload
USER 65532:65532
ENTRYPOINT ["/workload"]
