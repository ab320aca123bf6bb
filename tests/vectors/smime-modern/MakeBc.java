// Bouncy Castle 1.72 (Debian 12: libbcpkix-java) writes the CMS that OpenSSL 3.0 cannot: X25519/X448 key
// agreement (RFC 8418) and Ed25519/Ed448 signatures (RFC 8419). Run by make.sh; writes bc-*.der.
import java.io.FileReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.io.FileOutputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.Security;
import java.security.cert.X509Certificate;
import java.util.Collections;

import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaCertStore;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cms.CMSAlgorithm;
import org.bouncycastle.cms.CMSAuthEnvelopedDataGenerator;
import org.bouncycastle.cms.CMSEnvelopedDataGenerator;
import org.bouncycastle.operator.OutputAEADEncryptor;
import org.bouncycastle.cms.CMSProcessableByteArray;
import org.bouncycastle.cms.CMSSignedDataGenerator;
import org.bouncycastle.cms.jcajce.JcaSignerInfoGeneratorBuilder;
import org.bouncycastle.cms.jcajce.JceCMSContentEncryptorBuilder;
import org.bouncycastle.cms.jcajce.JceKeyAgreeRecipientInfoGenerator;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;

public class MakeBc {
    // Bouncy Castle 1.72's CMS layer asks the provider for "ECDHwithSHA256KDF" (by the scheme's OID) whatever the
    // key type, and BC's EC agreement refuses an X25519 key: this provider hands that request to BC's own
    // X25519/X448 agreements with the same X9.63 KDF (RFC 8418 section 2.1). The CMS structure, the
    // ECC-CMS-SharedInfo and the key wrap stay Bouncy Castle's.
    static final class XdhAgreement extends java.security.Provider {
        XdhAgreement() {
            super("XDH-under-ECDH-names", "1.0", "BC's XDH agreements under the ECDH scheme names");
            String spi = "org.bouncycastle.jcajce.provider.asymmetric.edec.KeyAgreementSpi$";
            put("KeyAgreement.1.3.132.1.11.1", spi + "X25519withSHA256KDF");  // dhSinglePass-stdDH-sha256kdf
            put("KeyAgreement.1.3.132.1.11.3", spi + "X448withSHA512KDF");  // dhSinglePass-stdDH-sha512kdf
        }
    }

    static X509Certificate cert(String name) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(name + ".cert.pem"))) {
            return new JcaX509CertificateConverter().setProvider("BC").getCertificate((X509CertificateHolder) p.readObject());
        }
    }

    static PrivateKey key(String name) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(name + ".key.pem"))) {
            return new JcaPEMKeyConverter().setProvider("BC").getPrivateKey((PrivateKeyInfo) p.readObject());
        }
    }

    static void write(String file, byte[] data) throws Exception {
        try (FileOutputStream out = new FileOutputStream(file)) { out.write(data); }
    }

    // Ephemeral-static key agreement to one recipient: the sender's key pair is fresh, as RFC 8418 requires.
    static byte[] envelope(byte[] content, String recipient, String curve, ASN1ObjectIdentifier kdf,
                           ASN1ObjectIdentifier wrap, ASN1ObjectIdentifier cipher) throws Exception {
        KeyPair ephemeral = KeyPairGenerator.getInstance(curve, "BC").generateKeyPair();
        JceKeyAgreeRecipientInfoGenerator kari = new JceKeyAgreeRecipientInfoGenerator(
            kdf, ephemeral.getPrivate(), ephemeral.getPublic(), wrap);  // providers in order: XdhAgreement first
        kari.addRecipient(cert(recipient));
        if (cipher.equals(CMSAlgorithm.AES128_GCM)) {  // AuthEnvelopedData (RFC 5083), as RFC 5084 asks for GCM
            CMSAuthEnvelopedDataGenerator gen = new CMSAuthEnvelopedDataGenerator();
            gen.addRecipientInfoGenerator(kari);
            return gen.generate(new CMSProcessableByteArray(content),
                (OutputAEADEncryptor) new JceCMSContentEncryptorBuilder(cipher).setProvider("BC").build()).getEncoded();
        }
        CMSEnvelopedDataGenerator gen = new CMSEnvelopedDataGenerator();
        gen.addRecipientInfoGenerator(kari);
        return gen.generate(new CMSProcessableByteArray(content),
            new JceCMSContentEncryptorBuilder(cipher).setProvider("BC").build()).getEncoded();
    }

    static byte[] sign(byte[] content, String signer, String algorithm, boolean encapsulate) throws Exception {
        CMSSignedDataGenerator gen = new CMSSignedDataGenerator();
        gen.addSignerInfoGenerator(new JcaSignerInfoGeneratorBuilder(
                new JcaDigestCalculatorProviderBuilder().setProvider("BC").build())
            .build(new JcaContentSignerBuilder(algorithm).setProvider("BC").build(key(signer)), cert(signer)));
        gen.addCertificates(new JcaCertStore(Collections.singletonList(cert(signer))));
        return gen.generate(new CMSProcessableByteArray(content), encapsulate).getEncoded();
    }

    public static void main(String[] args) throws Exception {
        Security.insertProviderAt(new XdhAgreement(), 1);
        Security.addProvider(new BouncyCastleProvider());
        byte[] content = Files.readAllBytes(Paths.get("content.txt"));
        write("bc-x25519-sha256kdf-aes128.der", envelope(content, "x25519", "X25519", CMSAlgorithm.ECDH_SHA256KDF,
            CMSAlgorithm.AES128_WRAP, CMSAlgorithm.AES128_CBC));
        write("bc-x448-sha512kdf-aes256.der", envelope(content, "x448", "X448", CMSAlgorithm.ECDH_SHA512KDF,
            CMSAlgorithm.AES256_WRAP, CMSAlgorithm.AES256_CBC));
        write("bc-x25519-sha256kdf-aes128gcm.der", envelope(content, "x25519", "X25519", CMSAlgorithm.ECDH_SHA256KDF,
            CMSAlgorithm.AES128_WRAP, CMSAlgorithm.AES128_GCM));
        write("bc-sig-ed25519.der", sign(content, "ed25519", "Ed25519", true));
        write("bc-sig-ed448.der", sign(content, "ed448", "Ed448", true));
        // sign, then encrypt the signed data to X25519, in its MIME entity (RFC 8551 section 3.4): as clients do
        byte[] signedEntity = ("Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\r\n"
            + "Content-Transfer-Encoding: base64\r\n\r\n"
            + Base64.getMimeEncoder().encodeToString(sign(content, "ed25519", "Ed25519", true)) + "\r\n")
            .getBytes(StandardCharsets.US_ASCII);
        write("bc-sig-ed25519-env-x25519.der", envelope(signedEntity, "x25519", "X25519",
            CMSAlgorithm.ECDH_SHA256KDF, CMSAlgorithm.AES128_WRAP, CMSAlgorithm.AES128_CBC));
    }
}
