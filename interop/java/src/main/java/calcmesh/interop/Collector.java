package calcmesh.interop;

import io.grpc.Status;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** A response observer that keeps every message and the call's final status. */
final class Collector<T> implements io.grpc.stub.StreamObserver<T> {
    private final List<T> items = new ArrayList<>();
    private final CountDownLatch done = new CountDownLatch(1);
    private volatile Status status;

    @Override
    public synchronized void onNext(T item) {
        items.add(item);
    }

    @Override
    public void onError(Throwable t) {
        status = Status.fromThrowable(t);
        done.countDown();
    }

    @Override
    public void onCompleted() {
        status = Status.OK;
        done.countDown();
    }

    /** True once the server has ended the call. */
    boolean isDone() {
        return done.getCount() == 0;
    }

    /** Waits for the end of the call (the call's deadline bounds it; the wait is bounded too). */
    Status await(long millis) throws InterruptedException {
        if (!done.await(millis, TimeUnit.MILLISECONDS)) {
            return Status.DEADLINE_EXCEEDED.withDescription("no end of call within " + millis + " ms");
        }
        return status;
    }

    synchronized List<T> items() {
        return new ArrayList<>(items);
    }
}
