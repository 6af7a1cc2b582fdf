// A JSch client (Debian's libjsch-java, 0.1.54: the JSch of Jenkins agents
// and many Java programs) for the front door's tests, compiled once per test
// run. It knows no ed25519 and no rsa-sha2-*, and reads only PEM keys.
// Usage: java JschClient PORT KNOWN_HOSTS USER COMMAND CASE...; each CASE is
// KEYFILE or KEYFILE,SERVER_HOST_KEY_ALGORITHMS, run in turn on a connection
// of its own, in one JVM (a JVM start costs a second). One JSON line per
// case: the host key type it verified, stdout and stderr (base64) and the
// exit status, or the exception's message.
import com.jcraft.jsch.ChannelExec;
import com.jcraft.jsch.JSch;
import com.jcraft.jsch.Session;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.util.Base64;

public class JschClient {
  public static void main(String[] args) {
    int port = Integer.parseInt(args[0]);
    for (int i = 4; i < args.length; i++) System.out.println(run(port, args[1], args[2], args[3], args[i].split(",", 2)));
  }

  static String run(int port, String knownHosts, String user, String command, String[] spec) {
    Session session = null;
    try {
      JSch jsch = new JSch();
      jsch.setKnownHosts(knownHosts);
      jsch.addIdentity(spec[0]);
      session = jsch.getSession(user, "127.0.0.1", port);
      session.setConfig("StrictHostKeyChecking", "yes");
      session.setConfig("PreferredAuthentications", "publickey");
      if (spec.length > 1) session.setConfig("server_host_key", spec[1]);
      session.connect(20000);
      ChannelExec channel = (ChannelExec) session.openChannel("exec");
      channel.setCommand(command);
      ByteArrayOutputStream err = new ByteArrayOutputStream();
      channel.setErrStream(err);
      InputStream in = channel.getInputStream();
      channel.connect(20000);
      byte[] out = in.readAllBytes();
      // The exit status arrives with the close, which may follow the last byte.
      for (int waited = 0; !channel.isClosed() && waited < 20000; waited += 10) Thread.sleep(10);
      Base64.Encoder b64 = Base64.getEncoder();
      return String.format("{\"hostKey\":\"%s\",\"stdout\":\"%s\",\"stderr\":\"%s\",\"exit\":%d}", session.getHostKey().getType(),
          b64.encodeToString(out), b64.encodeToString(err.toByteArray()), channel.getExitStatus());
    } catch (Exception e) {
      return String.format("{\"error\":\"%s\"}", String.valueOf(e.getMessage()).replace("\\", "\\\\").replace("\"", "\\\""));
    } finally {
      if (session != null) session.disconnect();
    }
  }
}
