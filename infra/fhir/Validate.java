// HAPI FHIR's instance validator over FHIR R4 resource files: one JSON line per issue found.
//
//   java -cp "<libs>/*" infra/fhir/Validate.java resource1.json bundle2.json ...
//
// The R4 core profiles, value sets and code systems come from hapi-fhir-validation-resources-r4
// (offline; no terminology server). Every file is validated with one validator built once, so a
// run over many files costs one start. Each issue is printed as
// {"file": ..., "severity": "error|warning|information", "location": ..., "message": ...};
// a file without issues prints {"file": ..., "severity": "ok"}. The exit code is 0 when every file
// was read (whatever its issues), 2 when one could not be read.
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

public class Validate {
    private static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : (text == null ? "" : text).toCharArray()) {
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) out.append(String.format("\\u%04x", (int) c)); else out.append(c);
            }
        }
        return out.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        FhirContext context = FhirContext.forR4();
        ValidationSupportChain chain = new ValidationSupportChain(
            new DefaultProfileValidationSupport(context),
            new CommonCodeSystemsTerminologyService(context),
            new InMemoryTerminologyServerValidationSupport(context),
            new SnapshotGeneratingValidationSupport(context));
        FhirValidator validator = context.newValidator();
        FhirInstanceValidator instanceValidator = new FhirInstanceValidator(chain);
        instanceValidator.setAnyExtensionsAllowed(true);
        validator.registerValidatorModule(instanceValidator);
        int status = 0;
        for (String name : args) {
            String body;
            try {
                body = Files.readString(Path.of(name), StandardCharsets.UTF_8);
            } catch (Exception e) {
                System.out.println("{\"file\": " + quote(name) + ", \"severity\": \"unreadable\", \"message\": " + quote(e.toString()) + "}");
                status = 2;
                continue;
            }
            ValidationResult result = validator.validateWithResult(body);
            boolean any = false;
            for (SingleValidationMessage message : result.getMessages()) {
                any = true;
                System.out.println("{\"file\": " + quote(name) + ", \"severity\": " + quote(message.getSeverity().getCode())
                    + ", \"location\": " + quote(message.getLocationString()) + ", \"message\": " + quote(message.getMessage()) + "}");
            }
            if (!any) System.out.println("{\"file\": " + quote(name) + ", \"severity\": \"ok\"}");
        }
        System.exit(status);
    }
}
