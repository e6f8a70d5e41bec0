package calcmesh.interop;

import io.grpc.Status;

/** Status code names as the scenario spells them (grpc-java's Status.Code names: INVALID_ARGUMENT, …). */
final class StatusNames {
    private StatusNames() {
    }

    static String of(int code) {
        return Status.fromCodeValue(code).getCode().name();
    }

    static String of(Status status) {
        return status.getCode().name();
    }
}
