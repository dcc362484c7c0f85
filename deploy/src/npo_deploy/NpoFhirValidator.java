// The project's FHIR R4 validation runner: HAPI FHIR's instance validator in one JVM for many
// resources (its start-up takes seconds, a validation milliseconds).
//
// Protocol (UTF-8 lines): each line on stdin is one resource as compact JSON; for each, one line
// on stdout: the validator's result as a compact OperationOutcome. stdout carries nothing else
// (library output is sent to stderr). A line "ready" is written once the validator is warmed up.
// Offline: core R4 definitions and in-memory terminology only, no terminology server.

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

public final class NpoFhirValidator {
  private NpoFhirValidator() {}

  public static void main(String[] args) throws Exception {
    PrintStream protocol =
        new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
    System.setOut(System.err);
    FhirContext context = FhirContext.forR4();
    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(context),
            new CommonCodeSystemsTerminologyService(context),
            new InMemoryTerminologyServerValidationSupport(context),
            new SnapshotGeneratingValidationSupport(context));
    FhirInstanceValidator instanceValidator = new FhirInstanceValidator(chain);
    // Implementation-guide profiles (IHE BALP, IPS) cannot be fetched here: a claim of one is
    // reported as a warning, and the project's own tests check those profiles' rules.
    instanceValidator.setErrorForUnknownProfiles(false);
    FhirValidator validator = context.newValidator();
    validator.registerValidatorModule(instanceValidator);
    IParser json = context.newJsonParser().setPrettyPrint(false);
    validator.validateWithResult("{\"resourceType\":\"Basic\",\"code\":{\"text\":\"warm-up\"}}");
    protocol.println("ready");
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      if (line.isBlank()) {
        continue;
      }
      ValidationResult result = validator.validateWithResult(line);
      protocol.println(json.encodeResourceToString(result.toOperationOutcome()));
    }
  }
}
